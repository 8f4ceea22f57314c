"""How a router orders candidates: what a request needs, a policy over models, load within a model.

Pure functions over cards and deployments, so every routing decision is unit-tested
without a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from shoal.core.backend import ModelCard
from shoal.core.deployment import Deployment
from shoal.core.operation import Operation

Policy = Literal["cheapest", "fastest", "quality"]
POLICIES: tuple[str, ...] = ("cheapest", "fastest", "quality")


def lacks_hard_need(card: ModelCard, request: Operation) -> bool:
    """Whether ``card`` misses a need of ``request`` that no fallback may ignore (images)."""
    return any(need not in card.capabilities for need in request.hard_needs())


def unfit(card: ModelCard, request: Operation) -> str | None:
    """Why ``card`` cannot serve ``request`` (a missing capability, a too-short context), or None."""
    for need in request.needs():
        if need not in card.capabilities:
            return f"does not support {need}"
    wanted = request.typical_input_tokens() + (request.requested_output_tokens() or 0)
    if card.context_length and wanted > card.context_length:
        return f"has a {card.context_length}-token context, too short for this request (~{wanted} tokens)"
    return None


def price(card: ModelCard) -> float:
    """USD per 1M input plus 1M output tokens (what ``cheapest`` compares); 0 when unpriced."""
    pricing = card.extra.get("pricing") or {}
    try:
        return float(pricing.get("input") or 0) + float(pricing.get("output") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0.0


def outstanding(dep: Deployment) -> float:
    """Requests running or queued on ``dep``, relative to its slots."""
    adm = dep.admission
    return (adm.running + adm.queued) / max(1, adm.slots)


def by_load(deps: Sequence[Deployment]) -> list[Deployment]:
    """Fewest outstanding requests first (configuration order breaks ties)."""
    return sorted(deps, key=outstanding)


def order_models(groups: Sequence[Sequence[Deployment]], policy: str,
                 request: Operation) -> list[Sequence[Deployment]]:
    """The router's models (each a group of deployments, in quality order) in ``policy`` order.

    ``cheapest`` by price, ``fastest`` by the lowest measured time to first token
    (unmeasured first, to learn it), ``quality`` keeps the configured order. Models
    that reason come first when the request asks for reasoning.
    """
    indexed = list(enumerate(groups))

    def key(item: tuple[int, Sequence[Deployment]]) -> tuple[float, ...]:
        index, deps = item
        card = deps[0].card
        reasoning = 0.0 if all(p in card.capabilities for p in request.prefers()) else 1.0
        if policy == "cheapest":
            primary = price(card)
        elif policy == "fastest":
            measured = [d.ttft_ewma for d in deps if d.ttft_ewma is not None]
            primary = min(measured) if len(measured) == len(deps) else 0.0
        else:
            primary = 0.0
        return (reasoning, primary, float(index))

    return [deps for _, deps in sorted(indexed, key=key)]
