"""The meter as pipeline hooks: limits before generation, one usage row per generation however it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shoal.auth.counters import LocalCounters
from shoal.auth.ratelimit import RateLimiter
from shoal.core.backend import BackendFailure, BaseBackend, ModelCard
from shoal.core.embeddings import EMBED, EmbeddingEvent, EmbeddingRequest, Vectors
from shoal.core.admission import Admission
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.routing.router import Router
from shoal.core.pipeline import Pipeline
from shoal.core.types import Finish, GenerationEvent, GenerationRequest, Message, SamplingParams, TextDelta, Usage
from shoal.errors import (
    BackendError,
    InvalidRequestError,
    OverloadedError,
    QuotaExceededError,
    RateLimitError,
)
from shoal.storage.db import Database
from shoal.storage.keys import ApiKey
from shoal.storage.usage import UsageStore
from shoal.usage.budget import LocalLedger
from shoal.core.types import typical_input_tokens
from shoal.usage.estimate import max_cost
from shoal.usage.meter import Meter
from shoal.usage.pricing import PriceTable, Pricing
from tests.scripted import CARD, ScriptedBackend, text_script

PRICE = Pricing(input=1000.0, cached_input=100.0, output=4000.0)  # USD per 1M: big, to see small costs


def setup(db: Database, backend: ScriptedBackend, slots: int = 1, max_queue: int = 0) -> tuple[Pipeline, Meter]:
    usage = UsageStore(db)
    limiter = RateLimiter(LocalCounters())
    meter = Meter(usage, PriceTable({"test-model": PRICE}), limiter, LocalLedger(usage.spend))
    dep = Deployment(CARD, backend, Admission(slots, max_queue))
    return Pipeline(Router([dep]), hooks=meter), meter


def request(text: str = "hello there", max_tokens: int | None = 8) -> GenerationRequest:
    return GenerationRequest(model="test-model", messages=(Message("user", text),),
                             sampling=SamplingParams(max_tokens=max_tokens))


def ctx(key: ApiKey | None = None) -> RequestContext:
    return RequestContext(owner=key.id if key else None, key_id=key.id if key else None,
                          endpoint="/v1/chat/completions", key=key)


async def run(pipeline: Pipeline, context: RequestContext, req: GenerationRequest | None = None) -> list:
    gen = await pipeline.start(req or request(), context)
    try:
        return [ev async for ev in gen]
    finally:
        await gen.aclose()


async def test_completed_generation_is_metered(db: Database) -> None:
    backend = ScriptedBackend(text_script("a", "b", usage=Usage(100, 20, cached_tokens=40, reasoning_tokens=5)))
    pipeline, meter = setup(db, backend)
    key = ApiKey(id="key_m", name="m", prefix="p")
    await run(pipeline, ctx(key))
    [rec] = await meter.usage.records()
    assert (rec.key_id, rec.model, rec.deployment, rec.endpoint, rec.status) == (
        "key_m", "test-model", "scripted", "/v1/chat/completions", "completed")
    assert (rec.input_tokens, rec.cached_tokens, rec.output_tokens, rec.reasoning_tokens) == (100, 40, 20, 5)
    assert rec.cost_usd == pytest.approx((60 * 1000 + 40 * 100 + 20 * 4000) / 1e6)
    assert rec.ttft_ms is not None and rec.latency_ms >= rec.ttft_ms >= 0


async def test_anonymous_and_static_callers_are_metered_too(db: Database) -> None:
    pipeline, meter = setup(db, ScriptedBackend())
    await run(pipeline, RequestContext(endpoint="/v1/responses"))
    await run(pipeline, RequestContext(owner="static:abc", key_id="static:abc", endpoint="/v1/responses"))
    assert sorted(str(r.key_id) for r in await meter.usage.records()) == ["None", "static:abc"]


async def test_cancelled_stream_is_metered_for_what_was_generated(db: Database) -> None:
    gate = asyncio.Event()
    backend = ScriptedBackend([TextDelta("a"), TextDelta("b"), TextDelta("c"), gate, TextDelta("d"),
                               Finish("stop", Usage(9, 4))])
    pipeline, meter = setup(db, backend)
    gen = await pipeline.start(request("x" * 40), ctx())
    seen = 0
    async for _ in gen:
        seen += 1
        if seen == 3:
            break
    await gen.aclose()  # the client went away
    [rec] = await meter.usage.records()
    assert rec.status == "cancelled" and rec.output_tokens == 3
    assert rec.input_tokens == typical_input_tokens(request("x" * 40))
    assert rec.cost_usd == pytest.approx((rec.input_tokens * 1000 + 3 * 4000) / 1e6)
    assert backend.closed_early == [True]


async def test_failed_generation_is_recorded_failed(db: Database) -> None:
    backend = ScriptedBackend([TextDelta("a"), BackendFailure("engine crashed")],
                              [BackendFailure("prompt too long", client_error=True)])
    pipeline, meter = setup(db, backend)
    with pytest.raises(BackendError):
        await run(pipeline, ctx())
    with pytest.raises(InvalidRequestError):
        await run(pipeline, ctx())
    records = await meter.usage.records()
    assert [r.status for r in records] == ["failed", "failed"]
    early, midway = records  # newest first
    assert early.output_tokens == 0 and early.cost_usd == 0
    assert midway.output_tokens == 1 and midway.input_tokens > 0


async def test_over_budget_is_refused_before_generation(db: Database) -> None:
    backend = ScriptedBackend()
    pipeline, meter = setup(db, backend)
    key = ApiKey(id="key_q", name="q", prefix="p", budget_usd=0.0, budget_period="day")
    with pytest.raises(QuotaExceededError) as info:
        await pipeline.start(request(), ctx(key))
    assert info.value.code == "insufficient_quota" and backend.requests == []
    assert await meter.usage.records() == []  # nothing ran, nothing metered
    assert pipeline.deployments[0].admission.running == 0


async def test_token_limit_refusal_releases_nothing_twice(db: Database) -> None:
    backend = ScriptedBackend(text_script("a", usage=Usage(30, 10)))
    pipeline, meter = setup(db, backend)
    key = ApiKey(id="key_t", name="t", prefix="p", tpm=60)
    context = ctx(key)
    await run(pipeline, context, request("hi", max_tokens=10))
    assert context.headers["x-ratelimit-remaining-tokens"] == str(60 - typical_input_tokens(request("hi")) - 10)
    # settled to the real 40 tokens: 20 left, and this one needs more
    with pytest.raises(RateLimitError) as info:
        await pipeline.start(request("hi", max_tokens=20), ctx(key))
    assert info.value.headers["x-ratelimit-remaining-tokens"] == "20"
    assert len(backend.requests) == 1


async def test_budget_reservation_released_when_admission_fails(db: Database) -> None:
    gate = asyncio.Event()
    backend = ScriptedBackend([TextDelta("a"), gate, Finish("stop", Usage(1, 1))])
    pipeline, meter = setup(db, backend, slots=1, max_queue=0)
    key = ApiKey(id="key_r", name="r", prefix="p", budget_usd=1.0, budget_period="month")
    running = await pipeline.start(request(), ctx(key))
    with pytest.raises(OverloadedError):
        await pipeline.start(request(), ctx(key))
    gate.set()
    [_ async for _ in running]
    await running.aclose()
    statuses = sorted(r.status for r in await meter.usage.records())
    assert statuses == ["completed", "rejected"]
    held = meter.ledger._periods["key_r"].held(0)  # type: ignore[attr-defined]
    assert held == 0


async def test_fifty_parallel_requests_against_a_nearly_spent_budget(db: Database) -> None:
    """Spend stays within the budget (each admitted request's whole reservation fits), and some requests get 429."""
    backend = ScriptedBackend(capacity=4)
    for _ in range(50):
        backend.add(TextDelta("x"), Finish("stop", Usage(20, 3)))
    pipeline, meter = setup(db, backend, slots=4, max_queue=64)
    req = request("hello", max_tokens=3)
    reservation = max_cost(req, CARD.context_length, PRICE)
    actual = PRICE.cost(20, 0, 3)
    budget = 5 * actual + reservation / 2  # room for a handful of requests
    key = ApiKey(id="key_p", name="p", prefix="p", budget_usd=budget, budget_period="day")
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await run(pipeline, ctx(key), req)
            outcomes.append("ok")
        except QuotaExceededError:
            outcomes.append("quota")

    await asyncio.gather(*(one() for _ in range(50)))
    spent = await meter.usage.spend("key_p", 0)
    assert "quota" in outcomes and "ok" in outcomes
    assert spent <= budget
    assert spent == pytest.approx(outcomes.count("ok") * actual)


async def test_tokens_without_max_tokens_reserve_the_context_left(db: Database) -> None:
    """Long outputs without max_tokens cannot run side by side past the limit (each may fill the context)."""
    gate = asyncio.Event()
    backend = ScriptedBackend([TextDelta("a"), gate, Finish("stop", Usage(10, 1))], capacity=4)
    pipeline, meter = setup(db, backend, slots=4)
    key = ApiKey(id="key_l", name="l", prefix="p", tpm=2 * CARD.context_length)
    first_ctx = ctx(key)
    first = await pipeline.start(request(max_tokens=None), first_ctx)
    assert first_ctx.headers["x-ratelimit-remaining-tokens"] == str(CARD.context_length)  # the whole window held
    second = await pipeline.start(request(max_tokens=None), ctx(key))
    with pytest.raises(RateLimitError):
        await pipeline.start(request(max_tokens=None), ctx(key))
    assert len(backend.requests) == 2
    gate.set()
    for gen in (first, second):
        [_ async for _ in gen]
        await gen.aclose()


async def test_tokens_without_max_tokens_capped_at_the_limit(db: Database) -> None:
    """A context larger than the limit: such a request may run, but alone in its minute."""
    pipeline, meter = setup(db, ScriptedBackend())
    key = ApiKey(id="key_c", name="c", prefix="p", tpm=1000)  # less than the 4,096-token context
    context = ctx(key)
    gen = await pipeline.start(request(max_tokens=None), context)
    assert context.headers["x-ratelimit-remaining-tokens"] == "0"
    [_ async for _ in gen]
    await gen.aclose()


async def test_budget_priced_on_the_costliest_candidate(db: Database) -> None:
    """A router may fail over to a dearer model: the reservation covers it."""
    from shoal.core.backend import ModelCard

    cheap = ModelCard(id="cheap", owned_by="t", created=0, context_length=1024)
    dear = ModelCard(id="dear", owned_by="t", created=0, context_length=2048)
    usage = UsageStore(db)
    prices = PriceTable({"cheap": Pricing(input=1, output=1), "dear": Pricing(input=100, output=400)})
    meter = Meter(usage, prices, RateLimiter(LocalCounters()), LocalLedger(usage.spend))
    backend = ScriptedBackend(cards=[cheap, dear])
    deps = [Deployment(card, backend, Admission(1, 0)) for card in (cheap, dear)]
    key = ApiKey(id="key_d", name="d", prefix="p", budget_usd=10.0, budget_period="day")
    req = GenerationRequest(model="cheap", messages=(Message("user", "hi"),))
    ticket = await meter.admit(req, ctx(key), deps)
    assert ticket.budget is not None
    assert ticket.budget.amount == pytest.approx(max_cost(req, dear.context_length, prices.for_card(dear)))


async def test_a_long_generation_keeps_its_budget_reservation(db: Database) -> None:
    """Reservations lapse after a while (a crashed replica's); a running generation's are extended."""
    usage = UsageStore(db)
    ledger = LocalLedger(usage.spend, hold_seconds=0.3)
    meter = Meter(usage, PriceTable({"test-model": PRICE}), RateLimiter(LocalCounters()), ledger, renew_every=0.05)
    gate = asyncio.Event()
    backend = ScriptedBackend([TextDelta("a"), gate, Finish("stop", Usage(1, 1))])
    pipeline = Pipeline(Router([Deployment(CARD, backend, Admission(1, 1))]), hooks=meter)
    req = request(max_tokens=8)
    budget = max_cost(req, CARD.context_length, PRICE) * 1.5  # room for one request at a time
    key = ApiKey(id="key_h", name="h", prefix="p", budget_usd=budget, budget_period="day")
    gen = await pipeline.start(req, ctx(key))
    await asyncio.sleep(0.6)  # twice the reservation's lifetime
    with pytest.raises(QuotaExceededError):
        await meter.admit(req, ctx(key), pipeline.deployments)  # still held: no second one fits
    gate.set()
    [_ async for _ in gen]
    await gen.aclose()
    await meter.aclose()
    assert ledger._periods["key_h"].held(0) == 0  # type: ignore[attr-defined]


class FlakyLedger(LocalLedger):
    """Settles fail ``failures`` times (Redis or the database away), then work."""

    def __init__(self, usage: UsageStore, failures: int) -> None:
        super().__init__(usage.spend)
        self.failures = failures
        self.attempts = 0

    async def settle(self, hold, actual):  # type: ignore[no-untyped-def]
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("store away")
        await super().settle(hold, actual)


@pytest.mark.parametrize("failures", [2, 10])
async def test_a_failed_settle_is_retried_then_logged_loudly(db: Database, failures: int,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    usage = UsageStore(db)
    ledger = FlakyLedger(usage, failures)
    meter = Meter(usage, PriceTable({"test-model": PRICE}), RateLimiter(LocalCounters()), ledger,
                  settle_backoff=(0.01, 0.01, 0.01))
    pipeline = Pipeline(Router([Deployment(CARD, ScriptedBackend(), Admission(1, 0))]), hooks=meter)
    key = ApiKey(id="key_f", name="f", prefix="p", budget_usd=100.0, budget_period="day")
    await run(pipeline, ctx(key))
    await meter.aclose()
    held = ledger._periods["key_f"].held(0)
    if failures == 2:
        assert ledger.attempts == 3 and held == 0  # released on the second retry
    else:
        assert ledger.attempts == 4 and held > 0  # the first try and three retries
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert errors and "GAVE UP settling the budget reservation" in errors[0].getMessage()
        assert "key_f" in errors[0].getMessage()


class Embedder(BaseBackend):
    """Answers every ``embed`` with one vector and 5 input tokens."""

    operations = frozenset({EMBED})

    def __init__(self) -> None:
        self.name, self.capacity = "embedder", 1

    def models(self) -> list[ModelCard]:
        return [EMBED_CARD]

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        raise self.unsupported("generate")

    async def embed(self, request: EmbeddingRequest) -> AsyncIterator[EmbeddingEvent]:
        yield Vectors([[1.0]])
        yield Finish("stop", Usage(input_tokens=5))

    async def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    async def aclose(self) -> None:
        return None


EMBED_CARD = ModelCard(id="embed-model", owned_by="t", created=0, context_length=4096, capabilities=("embeddings",))


async def test_an_embedding_reserves_its_input_only_and_is_metered(db: Database) -> None:
    usage = UsageStore(db)
    meter = Meter(usage, PriceTable({"embed-model": PRICE}), RateLimiter(LocalCounters()), LocalLedger(usage.spend))
    pipeline = Pipeline(Router([Deployment(EMBED_CARD, Embedder(), Admission(1, 0))]), hooks=meter)
    key = ApiKey(id="key_e", name="e", prefix="p", tpm=100, budget_usd=1.0, budget_period="day")
    context = ctx(key)
    operation = EmbeddingRequest(model="embed-model", inputs=("x" * 40,))
    run_ = await pipeline.start(operation, context)
    try:
        events = [ev async for ev in run_]
    finally:
        await run_.aclose()
    assert isinstance(events[0], Vectors)
    # Not the whole 4,096-token window a generation without max_tokens holds: nothing is written.
    assert context.headers["x-ratelimit-remaining-tokens"] == str(100 - operation.typical_input_tokens())
    await meter.aclose()
    [record] = await usage.records()
    assert (record.model, record.input_tokens, record.output_tokens) == ("embed-model", 5, 0)
    assert record.cost_usd == pytest.approx(PRICE.cost(5, 0, 0))


async def test_speculative_draft_counts_are_recorded_in_the_usage_row(db: Database) -> None:
    usage = Usage(100, 20, draft_tokens=30, draft_accepted_tokens=18)
    pipeline, meter = setup(db, ScriptedBackend(text_script("a", usage=usage)))
    await run(pipeline, ctx())
    [rec] = await meter.usage.records()
    assert (rec.draft_tokens, rec.draft_accepted_tokens) == (30, 18)
