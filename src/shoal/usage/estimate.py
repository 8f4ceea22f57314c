"""Token estimates made before a generation starts (the engine's real counts come at the end).

Two estimates, for two jobs:

* :func:`typical_input_tokens` (about 4 characters a token) is what a tokens-per-minute
  reservation holds: close to the truth, settled to it afterwards.
* :func:`upper_input_tokens` bounds the prompt from above for budget reservations: a
  token covers at least one byte of text, plus an allowance for what the chat
  template adds (role markers, a default system prompt, tool instructions).

Images count a fixed number of tokens each (their URL or base64 data is not prompt
text): :attr:`ImageInput.estimated_tokens` typically, :data:`IMAGE_UPPER_TOKENS` at most.
"""

from __future__ import annotations

import json
import math

from shoal.core.types import GenerationRequest
from shoal.usage.pricing import Pricing

PER_MESSAGE_TOKENS = 16
TEMPLATE_ALLOWANCE_TOKENS = 256
CHARS_PER_TOKEN = 4
IMAGE_UPPER_TOKENS = 1600
"""The most one image is taken to cost: above OpenAI's largest high-detail tiling (1,445) and
Anthropic's cap (~1,600 for a 1.15-megapixel image)."""


def _texts(request: GenerationRequest) -> list[str]:
    texts: list[str] = []
    for message in request.messages:
        texts.append(message.content or "")
        if message.reasoning:
            texts.append(message.reasoning)
        for call in message.tool_calls:
            texts += [call.name, call.arguments]
    for tool in request.tools:
        texts.append(json.dumps({"name": tool.name, "description": tool.description,
                                 "parameters": tool.parameters}, separators=(",", ":")))
    return texts


def typical_input_tokens(request: GenerationRequest) -> int:
    """A likely prompt size in tokens."""
    chars = sum(len(t) for t in _texts(request))
    images = sum(image.estimated_tokens for image in request.images)
    return math.ceil(chars / CHARS_PER_TOKEN) + 4 * len(request.messages) + 8 + images


def upper_input_tokens(request: GenerationRequest, context_length: int) -> int:
    """At most this many prompt tokens (never more than the context window)."""
    size = sum(len(t.encode()) for t in _texts(request)) + IMAGE_UPPER_TOKENS * len(request.images)
    return min(size + PER_MESSAGE_TOKENS * len(request.messages) + TEMPLATE_ALLOWANCE_TOKENS, context_length)


def max_output_tokens(request: GenerationRequest, context_length: int) -> int:
    """``max_tokens`` if set, else the context window (the most any generation can emit)."""
    limit = request.sampling.max_tokens
    return min(limit, context_length) if limit else context_length


def max_cost(request: GenerationRequest, context_length: int, pricing: Pricing) -> float:
    """The most ``request`` can cost: the upper prompt estimate at the input rate, all output at the output rate."""
    return pricing.cost(upper_input_tokens(request, context_length), 0, max_output_tokens(request, context_length))
