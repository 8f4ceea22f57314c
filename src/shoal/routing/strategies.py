"""How a router orders candidates: what a request needs, a policy over models, load within a model.

Pure functions over cards and deployments, so every routing decision is unit-tested
without a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from shoal.backends.base import ModelCard
from shoal.core.types import GenerationRequest

if TYPE_CHECKING:
    from shoal.core.pipeline import Deployment

Policy = Literal["cheapest", "fastest", "quality"]
POLICIES: tuple[str, ...] = ("cheapest", "fastest", "quality")
CHARS_PER_TOKEN = 4
HARD_NEEDS = frozenset({"vision"})
"""Needs a model named directly cannot fall back on: its backend would fail or silently drop the images."""


def prompt_tokens(request: GenerationRequest) -> int:
    """A quick over-estimate-free guess of the prompt size (about four characters a token).

    Each image counts as a fixed :attr:`ImageInput.estimated_tokens` (85 low
    detail, 765 otherwise), never by the length of its URL or data.
    """
    chars = 0
    images = 0
    for msg in request.messages:
        chars += len(msg.content) + len(msg.reasoning or "") + 8
        for call in msg.tool_calls:
            chars += len(call.name) + len(call.arguments)
        images += sum(image.estimated_tokens for image in msg.images)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description or "") + len(str(tool.parameters or ""))
    return chars // CHARS_PER_TOKEN + images


def needs(request: GenerationRequest) -> tuple[str, ...]:
    """The capabilities a deployment must have to serve ``request``."""
    out = []
    if request.tools and request.tool_choice != "none":
        out.append("tools")
    if request.response_format is not None and request.response_format.type == "json_schema":
        out.append("json_schema")
    if request.images:
        out.append("vision")
    return tuple(out)


def lacks_hard_need(card: ModelCard, request: GenerationRequest) -> bool:
    """Whether ``card`` misses a need of ``request`` that no fallback may ignore (images)."""
    return any(need in HARD_NEEDS and need not in card.capabilities for need in needs(request))


def wants_reasoning(request: GenerationRequest) -> bool:
    """Whether the request asks for reasoning (a preference, not a requirement)."""
    return request.reasoning_effort not in (None, "none")


def unfit(card: ModelCard, request: GenerationRequest) -> str | None:
    """Why ``card`` cannot serve ``request`` (a missing capability, a too-short context), or None."""
    for need in needs(request):
        if need not in card.capabilities:
            return f"does not support {need}"
    wanted = prompt_tokens(request) + (request.sampling.max_tokens or 0)
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


def outstanding(dep: "Deployment") -> float:
    """Requests running or queued on ``dep``, relative to its slots."""
    adm = dep.admission
    return (adm.running + adm.queued) / max(1, adm.slots)


def by_load(deps: Sequence["Deployment"]) -> list["Deployment"]:
    """Fewest outstanding requests first (configuration order breaks ties)."""
    return sorted(deps, key=outstanding)


def order_models(groups: Sequence[Sequence["Deployment"]], policy: str,
                 request: GenerationRequest) -> list[Sequence["Deployment"]]:
    """The router's models (each a group of deployments, in quality order) in ``policy`` order.

    ``cheapest`` by price, ``fastest`` by the lowest measured time to first token
    (unmeasured first, to learn it), ``quality`` keeps the configured order. Models
    that reason come first when the request asks for reasoning.
    """
    indexed = list(enumerate(groups))

    def key(item: tuple[int, Sequence["Deployment"]]) -> tuple[float, ...]:
        index, deps = item
        card = deps[0].card
        reasoning = 0.0 if not wants_reasoning(request) or "reasoning" in card.capabilities else 1.0
        if policy == "cheapest":
            primary = price(card)
        elif policy == "fastest":
            measured = [d.ttft_ewma for d in deps if d.ttft_ewma is not None]
            primary = min(measured) if len(measured) == len(deps) else 0.0
        else:
            primary = 0.0
        return (reasoning, primary, float(index))

    return [deps for _, deps in sorted(indexed, key=key)]
