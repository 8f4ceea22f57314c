"""Budgets under concurrency: reserve the maximum cost, settle the real one; bounded overshoot.

The same contract for the in-process ledger and the Redis ledger (two ledgers
on one Redis play two replicas).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable

import pytest

from shoal.errors import LimitsUnavailableError, QuotaExceededError
from shoal.storage.db import Database
from shoal.storage.keys import ApiKey
from shoal.storage.usage import UsageRecord, UsageStore
from shoal.usage.budget import HOLD_SECONDS, LocalLedger, RedisLedger
from shoal.usage.periods import period_bounds
from tests.services import REDIS_URL

NOW = 1_767_225_600.0 + 3600  # 2026-01-01T01:00Z
KEY = ApiKey(id="key_b", name="b", prefix="p", budget_usd=1.0, budget_period="day")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


LedgerFactory = Callable[[UsageStore, Clock], object]


@pytest.fixture(params=["local", "redis"])
async def ledgers(request: pytest.FixtureRequest) -> AsyncIterator[LedgerFactory]:
    """Makes ledgers ("replicas") over one shared state."""
    if request.param == "local":
        made: dict[int, LocalLedger] = {}  # in-process mode is one process: every "replica" is the same ledger
        yield lambda usage, clock: made.setdefault(id(usage), LocalLedger(usage.spend, clock=clock))
        return
    import redis.asyncio as aioredis

    prefix = request.getfixturevalue("redis_test_prefix")
    clients = []

    def make(usage: UsageStore, clock: Clock) -> RedisLedger:
        client = aioredis.from_url(REDIS_URL, decode_responses=True)
        clients.append(client)
        return RedisLedger(client, prefix, usage.spend, clock=clock)

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()


async def spend_and_settle(ledger, usage: UsageStore, hold, cost: float) -> None:  # type: ignore[no-untyped-def]
    await usage.add(UsageRecord(key_id=hold.key_id, model="m", deployment="d", endpoint="e", status="completed",
                                cost_usd=cost, ts=NOW))
    await ledger.settle(hold, cost)


async def test_admits_until_spent_then_refuses(db: Database, ledgers: LedgerFactory) -> None:
    usage = UsageStore(db)
    await usage.add(UsageRecord(key_id="key_b", model="m", deployment="d", endpoint="e", status="completed",
                                cost_usd=0.75, ts=NOW - 60))  # spent earlier today
    await usage.add(UsageRecord(key_id="key_b", model="m", deployment="d", endpoint="e", status="completed",
                                cost_usd=5.0, ts=NOW - 86400))  # yesterday: another period
    ledger = ledgers(usage, Clock())
    with pytest.raises(QuotaExceededError) as info:
        await ledger.reserve(KEY, 0.5)  # 0.75 spent: there is budget left, but not for this request's maximum
    assert "cannot fit a request that may cost up to $0.500000" in info.value.message
    hold = await ledger.reserve(KEY, 0.125)  # 0.875 <= 1.0: admitted, holds 0.125
    with pytest.raises(QuotaExceededError) as info:
        await ledger.reserve(KEY, 0.25)  # 0.75 + 0.125 held + 0.25 > 1.0
    err = info.value
    assert err.status_code == 429 and err.code == "insufficient_quota" and err.error_type == "insufficient_quota"
    start, end = period_bounds("day", NOW)
    assert int(err.headers["retry-after"]) == int(end - NOW)
    assert "reserved by requests in flight" in err.message
    await spend_and_settle(ledger, usage, hold, 0.125)
    second = await ledger.reserve(KEY, 0.125)  # exactly the budget: fits
    await spend_and_settle(ledger, usage, second, 0.125)  # 1.0: used up
    with pytest.raises(QuotaExceededError, match="has used its budget"):
        await ledger.reserve(KEY, 0.0)  # not even a free request


async def test_zero_budget_refuses_everything(db: Database, ledgers: LedgerFactory) -> None:
    ledger = ledgers(UsageStore(db), Clock())
    with pytest.raises(QuotaExceededError):
        await ledger.reserve(ApiKey(id="key_z", name="z", prefix="p", budget_usd=0.0, budget_period="month"), 0.0)


async def test_fifty_parallel_never_overshoot(db: Database, ledgers: LedgerFactory) -> None:
    """50 racing requests, spread over two "replicas", against a nearly spent budget."""
    usage = UsageStore(db)
    await usage.add(UsageRecord(key_id="key_b", model="m", deployment="d", endpoint="e", status="completed",
                                cost_usd=0.9, ts=NOW - 10))
    clock = Clock()
    replicas = [ledgers(usage, clock), ledgers(usage, clock)]
    reservation = 0.04
    admitted, refused = [], []
    rng = random.Random(5)

    async def one(i: int) -> None:
        ledger = replicas[i % 2]
        try:
            hold = await ledger.reserve(KEY, reservation)
        except QuotaExceededError:
            refused.append(i)
            return
        admitted.append(i)
        await asyncio.sleep(rng.random() * 0.02)
        await spend_and_settle(ledger, usage, hold, reservation * rng.uniform(0.9, 1.0))

    await asyncio.gather(*(one(i) for i in range(50)))
    spent = await usage.spend("key_b", period_bounds("day", NOW)[0])
    assert refused and admitted
    assert spent <= KEY.budget_usd + 1e-9  # a request is admitted only if its whole reservation fits
    assert 0.9 < spent


async def test_abandoned_reservations_expire(db: Database, ledgers: LedgerFactory) -> None:
    clock = Clock()
    ledger = ledgers(UsageStore(db), clock)
    await ledger.reserve(KEY, 0.95)  # never settled (a crashed replica)
    with pytest.raises(QuotaExceededError):
        await ledger.reserve(KEY, 0.1)
    clock.now += HOLD_SECONDS + 1
    await ledger.reserve(KEY, 0.1)


async def test_new_period_starts_fresh(db: Database, ledgers: LedgerFactory) -> None:
    usage = UsageStore(db)
    clock = Clock()
    ledger = ledgers(usage, clock)
    hold = await ledger.reserve(KEY, 0.5)
    await spend_and_settle(ledger, usage, hold, 2.0)
    with pytest.raises(QuotaExceededError):
        await ledger.reserve(KEY, 0.1)
    clock.now += 86400
    await ledger.reserve(KEY, 0.1)


async def test_redis_spend_loaded_once_and_kept_in_step(db: Database, redis_test_prefix: str) -> None:
    """A second replica starting later sees the spend, and settles made while loading are not lost."""
    import redis.asyncio as aioredis

    usage = UsageStore(db)
    await usage.add(UsageRecord(key_id="key_b", model="m", deployment="d", endpoint="e", status="completed",
                                cost_usd=0.5, ts=NOW - 10))
    a = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        loads = 0

        async def counting_spend(key_id: str, since: float) -> float:
            nonlocal loads
            loads += 1
            return await usage.spend(key_id, since)

        one = RedisLedger(a, redis_test_prefix, counting_spend, clock=Clock())
        two = RedisLedger(a, redis_test_prefix, counting_spend, clock=Clock())
        hold = await one.reserve(KEY, 0.3)
        await two.reserve(KEY, 0.1)
        assert loads == 1
        await spend_and_settle(one, usage, hold, 0.3)
        spent = float(await a.get(f"{redis_test_prefix}:budget:key_b:day:2026-01-01:spent"))
        assert spent == pytest.approx(0.8)
    finally:
        await a.aclose()


async def test_redis_down_is_a_503(db: Database) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(LimitsUnavailableError):
            await RedisLedger(client, "p", UsageStore(db).spend).reserve(KEY, 0.1)
    finally:
        await client.aclose()


async def test_extended_reservations_outlive_their_first_expiry(db: Database, ledgers: LedgerFactory) -> None:
    """A generation still running keeps its reservation: the meter extends it."""
    clock = Clock()
    ledger = ledgers(UsageStore(db), clock)
    hold = await ledger.reserve(KEY, 0.95)
    clock.now += HOLD_SECONDS - 1
    await ledger.extend([hold])
    clock.now += 10  # past the first expiry
    with pytest.raises(QuotaExceededError):
        await ledger.reserve(KEY, 0.1)
    clock.now += HOLD_SECONDS
    await ledger.reserve(KEY, 0.1)


async def test_redis_settle_retried_counts_once(db: Database, redis_test_prefix: str) -> None:
    """A settle retried after an error that hid its success (a timeout) adds the cost once."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        ledger = RedisLedger(client, redis_test_prefix, UsageStore(db).spend, clock=Clock())
        hold = await ledger.reserve(KEY, 0.25)
        await ledger.settle(hold, 0.25)
        await ledger.settle(hold, 0.25)
        spent = float(await client.get(f"{redis_test_prefix}:budget:key_b:day:2026-01-01:spent"))
        assert spent == pytest.approx(0.25)
    finally:
        await client.aclose()
