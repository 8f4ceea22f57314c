"""Per-key concurrency: a cap on in-flight generations, in-process and shared through Redis; one tenant
flooding cannot stall another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from shoal.auth.concurrency import ConcurrencyLimiter, Lease, LocalInFlight, RedisInFlight
from shoal.auth.counters import LocalCounters
from shoal.auth.ratelimit import RateLimiter
from shoal.core.admission import Admission
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.routing.router import Router
from shoal.core.pipeline import Pipeline
from shoal.core.types import Finish, GenerationEvent, GenerationRequest, Message, SamplingParams, TextDelta, Usage
from shoal.errors import OverloadedError, RateLimitError
from shoal.storage.db import Database
from shoal.storage.keys import ApiKey
from shoal.storage.usage import UsageStore
from shoal.usage.budget import LocalLedger
from shoal.usage.meter import Meter
from shoal.usage.pricing import PriceTable
from tests.scripted import CARD, ScriptedBackend
from tests.services import REDIS_URL


async def test_local_cap_refuses_past_the_limit_and_frees_on_leave() -> None:
    limiter = ConcurrencyLimiter(LocalInFlight(), 2)
    a, b = await limiter.enter("key_a"), await limiter.enter("key_a")
    with pytest.raises(RateLimitError) as info:
        await limiter.enter("key_a")
    err = info.value
    assert err.status_code == 429 and err.code == "concurrency_limit_exceeded" and err.headers["retry-after"] == "1"
    assert "2 requests in flight" in err.message
    assert await limiter.enter("key_b") is not None  # another key is not affected
    assert a is not None and b is not None
    await limiter.leave(a)
    await limiter.leave(a)  # twice: no effect
    assert await limiter.enter("key_a") is not None
    with pytest.raises(RateLimitError):
        await limiter.enter("key_a")


async def test_zero_is_no_cap() -> None:
    limiter = ConcurrencyLimiter(LocalInFlight(), 0)
    assert [await limiter.enter("k") for _ in range(100)] == [None] * 100


async def test_redis_cap_is_shared_by_replicas_and_lapses_when_not_renewed(redis_test_prefix: str) -> None:
    import redis.asyncio as aioredis

    now = [1000.0]
    clients = [aioredis.from_url(REDIS_URL, decode_responses=True) for _ in range(2)]
    try:
        one, two = (ConcurrencyLimiter(RedisInFlight(c, redis_test_prefix, clock=lambda: now[0]), 3, ttl=60)
                    for c in clients)
        assert one.expires and not ConcurrencyLimiter(LocalInFlight(), 3).expires
        leases = await asyncio.gather(one.enter("key_a"), two.enter("key_a"), one.enter("key_a"),
                                      two.enter("key_a"), return_exceptions=True)
        refused = [x for x in leases if isinstance(x, RateLimitError)]
        held = [x for x in leases if isinstance(x, Lease)]
        assert len(refused) == 1 and len(held) == 3
        await two.leave(held[0])
        again = await two.enter("key_a")
        assert again is not None
        now[0] += 50
        await one.renew([held[1], again])  # held[2] is not renewed: its replica "crashed"
        now[0] += 20  # past held[2]'s expiry, inside the renewed ones'
        assert await one.enter("key_a") is not None
        with pytest.raises(RateLimitError):
            await one.enter("key_a")
    finally:
        for c in clients:
            await c.aclose()


class SlowBackend(ScriptedBackend):
    """Every generation takes ``seconds`` (a busy model)."""

    def __init__(self, seconds: float, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.seconds = seconds

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        self.requests.append(request)
        return self._slow()

    async def _slow(self) -> AsyncIterator[GenerationEvent]:
        await asyncio.sleep(self.seconds)
        yield TextDelta("ok")
        yield Finish("stop", Usage(5, 1))


def context(key: ApiKey) -> RequestContext:
    return RequestContext(owner=key.id, key_id=key.id, endpoint="/v1/chat/completions", key=key)


async def test_one_key_flooding_does_not_stall_another(db: Database) -> None:
    """Key A keeps more requests coming than slots + queue; key B is still served, each within a bounded wait."""
    slots, queue, cap, seconds = 2, 4, 3, 0.1
    backend = SlowBackend(seconds, capacity=slots)
    usage = UsageStore(db)
    meter = Meter(usage, PriceTable(), RateLimiter(LocalCounters()), LocalLedger(usage.spend),
                  ConcurrencyLimiter(LocalInFlight(), cap))
    pipeline = Pipeline(Router([Deployment(CARD, backend, Admission(slots, queue))]), hooks=meter)
    a = ApiKey(id="key_a", name="a", prefix="p")
    b = ApiKey(id="key_b", name="b", prefix="p")
    req = GenerationRequest(model="test-model", messages=(Message("user", "hi"),),
                            sampling=SamplingParams(max_tokens=4))
    stop = asyncio.Event()
    outcomes: dict[str, int] = {"served": 0, "429": 0, "503": 0}

    async def one(key: ApiKey) -> None:
        generation = await pipeline.start(req, context(key))
        try:
            async for _ in generation:
                pass
        finally:
            await generation.aclose()

    async def flood() -> None:
        for _ in range(200):  # bounded
            if stop.is_set():
                return
            try:
                await one(a)
                outcomes["served"] += 1
            except RateLimitError:
                outcomes["429"] += 1
                await asyncio.sleep(0.005)
            except OverloadedError:
                outcomes["503"] += 1
                await asyncio.sleep(0.005)

    flooders = [asyncio.create_task(flood()) for _ in range(3 * (slots + queue))]
    await asyncio.sleep(3 * seconds)  # the flood is on
    waits = []
    try:
        for _ in range(5):
            started = time.perf_counter()
            await one(b)  # never refused: A holds at most `cap` of the slots + queue
            waits.append(time.perf_counter() - started)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*flooders), 10)
        await meter.aclose()
    # B waits for at most the A requests queued ahead of it (cap - slots) plus its own turn.
    assert max(waits) < (cap - slots + 2) * seconds + 0.5, waits
    assert outcomes["429"] > 0 and outcomes["503"] == 0 and outcomes["served"] > 0
