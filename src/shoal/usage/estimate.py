"""What a request may cost, bounded before it starts (the estimates themselves are the operation's)."""

from __future__ import annotations

from shoal.core.operation import Operation
from shoal.usage.pricing import Pricing


def max_cost(request: Operation, context_length: int, pricing: Pricing) -> float:
    """The most ``request`` can cost: the upper input estimate at the input rate, all output at the output rate."""
    return pricing.cost(request.upper_input_tokens(context_length), 0, request.max_output_tokens(context_length))
