"""``count_tokens`` asks the serving backend first, through any wrapper, and estimates when it cannot count."""

from __future__ import annotations

from shoal.api.messages.count import count_tokens
from shoal.core.admission import Admission
from shoal.core.backend import ModelCard
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.core.pipeline import Pipeline
from shoal.core.types import GenerationRequest, Message, typical_input_tokens
from shoal.routing.router import Router
from shoal.wiring.catalog_card import CatalogCard
from tests.scripted import ScriptedBackend

CARD = ModelCard(id="m", owned_by="t", created=0, context_length=4096)
REQUEST = GenerationRequest(model="m", messages=(Message("user", "hello there"),))


class Counting(ScriptedBackend):
    """A backend that counts exactly (as the local engine does)."""

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        return 42


class Broken(ScriptedBackend):
    async def count_tokens(self, request: GenerationRequest) -> int | None:
        raise RuntimeError("tokenizer gone")


def pipeline(backend: object) -> Pipeline:
    return Pipeline(Router([Deployment(CARD, backend, Admission(1, 1))]))  # type: ignore[arg-type]


async def test_a_catalog_deployment_counts_with_its_engine() -> None:
    # The catalog wraps every local engine in a CatalogCard: the count must reach the engine through it.
    wrapped = CatalogCard(Counting(cards=[CARD]), CARD, "m/local-0")
    assert await count_tokens(pipeline(wrapped), REQUEST, RequestContext()) == 42


async def test_an_estimate_when_the_backend_cannot_count_or_fails() -> None:
    assert await count_tokens(pipeline(ScriptedBackend(cards=[CARD])), REQUEST, RequestContext()) \
        == typical_input_tokens(REQUEST)
    assert await count_tokens(pipeline(Broken(cards=[CARD])), REQUEST, RequestContext()) \
        == typical_input_tokens(REQUEST)
