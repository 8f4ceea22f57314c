"""Window counters: all-or-nothing hits, expiry, and the same contract in Redis across "replicas"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shoal.auth.counters import Check, LocalCounters, RedisCounters
from shoal.errors import LimitsUnavailableError
from tests.services import REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    if request.param == "local":
        yield LocalCounters()
        return
    import redis.asyncio as aioredis

    prefix = request.getfixturevalue("redis_test_prefix")
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield RedisCounters(client, prefix)
    finally:
        await client.aclose()


async def test_hit_is_all_or_nothing(counters) -> None:  # type: ignore[no-untyped-def]
    assert await counters.hit([Check("a", 2, 1), Check("b", 10, 4)], ttl=60) == (True, [1, 4])
    assert await counters.hit([Check("a", 2, 1), Check("b", 10, 4)], ttl=60) == (True, [2, 8])
    ok, used = await counters.hit([Check("a", 5, 1), Check("b", 10, 4)], ttl=60)  # b would pass its limit
    assert (ok, used) == (False, [2, 8])
    assert await counters.hit([Check("a", 2, 0), Check("b", 100, 0)], ttl=60) == (True, [2, 8])  # a peek
    await counters.add("b", -3, ttl=60)
    assert await counters.hit([Check("b", 100, 0)], ttl=60) == (True, [5])


async def test_concurrent_hits_never_pass_the_limit(counters) -> None:  # type: ignore[no-untyped-def]
    results = await asyncio.gather(*(counters.hit([Check("c", 7, 1)], ttl=60) for _ in range(40)))
    assert sum(ok for ok, _ in results) == 7


def test_local_counters_expire() -> None:
    clock = Clock()
    local = LocalCounters(clock)
    asyncio.run(local.hit([Check("x", 1, 1)], ttl=10))
    assert asyncio.run(local.hit([Check("x", 1, 1)], ttl=10))[0] is False
    clock.now = 10.5
    assert asyncio.run(local.hit([Check("x", 1, 1)], ttl=10)) == (True, [1])


async def test_two_replicas_share_redis_counters(redis_test_prefix: str) -> None:
    import redis.asyncio as aioredis

    a = aioredis.from_url(REDIS_URL, decode_responses=True)
    b = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        one, two = RedisCounters(a, redis_test_prefix), RedisCounters(b, redis_test_prefix)
        results = await asyncio.gather(*((one if i % 2 else two).hit([Check("r", 5, 1)], ttl=60) for i in range(20)))
        assert sum(ok for ok, _ in results) == 5
        ttl = await a.pttl(f"{redis_test_prefix}:r")
        assert 0 < ttl <= 60_000
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_is_a_503() -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(LimitsUnavailableError) as info:
            await RedisCounters(client, "p").hit([Check("x", 1, 1)], ttl=1)
        assert info.value.status_code == 503 and "127.0.0.1:1" not in info.value.message
    finally:
        await client.aclose()
