"""Budgets: reserve a request's maximum cost before it runs, settle to the real cost after.

A request is admitted only if its own maximum cost fits: ``spent + reserved +
this reservation <= budget`` for the key's current period (and nothing once the
budget is used up, even a free request); it then holds that cost until it ends.
Because a settled cost never exceeds its reservation, the spend stays within the
budget however many requests race. A reservation expires ``hold_seconds`` after
it was made or last extended: the meter extends those of running generations, so
only a crashed replica's reservations lapse.

* :class:`LocalLedger`: one asyncio lock per key; the spend is read from the
  usage table and refreshed every few seconds (exact for one replica).
* :class:`RedisLedger`: the spend and the reservations live in Redis and are
  checked-and-reserved by one Lua script, so replicas cannot both pass.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from shoal.auth.counters import unavailable
from shoal.errors import QuotaExceededError
from shoal.storage.keys import ApiKey
from shoal.usage.periods import period_bounds, period_label

log = logging.getLogger("shoal.budget")

SpendFn = Callable[[str, float], Awaitable[float]]
"""(key id, period start) -> USD spent since then, from the usage table."""
HOLD_SECONDS = 900.0
"""A reservation neither settled nor extended (a crashed replica) stops counting after this long."""


@dataclass(frozen=True)
class BudgetHold:
    """A reservation against one key's budget in one period."""

    key_id: str
    label: str
    id: str
    amount: float


class Ledger(Protocol):
    """Where budget spend and reservations are kept."""

    async def reserve(self, key: ApiKey, amount: float) -> BudgetHold:
        """Reserve ``amount`` USD, or raise 429 ``insufficient_quota`` if the key's budget is used up."""
        ...

    async def settle(self, hold: BudgetHold, actual: float) -> None:
        """Release the reservation and add the real cost to the spend."""
        ...

    async def extend(self, holds: list[BudgetHold]) -> None:
        """Keep the reservations of generations still running from expiring."""
        ...


def fits(budget: float, spent: float, held: float, amount: float) -> bool:
    """Whether a reservation of ``amount`` may be made (the rule both ledgers apply)."""
    return spent + held < budget and spent + held + amount <= budget


def _refusal(key: ApiKey, spent: float, held: float, amount: float, end: float, now: float) -> QuotaExceededError:
    resets = datetime.fromtimestamp(end, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    used_up = spent + held >= (key.budget_usd or 0.0)
    why = "has used its budget" if used_up else f"cannot fit a request that may cost up to ${amount:.6f} in its budget"
    hint = "" if used_up else " Lower max_tokens (or send a shorter prompt) to reserve less."
    return QuotaExceededError(
        f"Key {key.id} {why} of ${key.budget_usd:.4f} for this {key.budget_period} "
        f"(spent ${spent:.6f}, ${held:.6f} reserved by requests in flight). It resets at {resets}.{hint}",
        headers={"retry-after": str(max(math.ceil(end - now), 1))})


@dataclass
class _Period:
    label: str
    spent: float
    loaded_at: float
    holds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Reservation id -> (USD, expires at)."""

    def held(self, now: float) -> float:
        """USD reserved by requests in flight (expired reservations dropped)."""
        for hold_id in [h for h, (_, expires) in self.holds.items() if expires <= now]:
            del self.holds[hold_id]
        return sum(amount for amount, _ in self.holds.values())


class LocalLedger:
    """Budgets in this process, with the spend of each period loaded from the usage table."""

    def __init__(self, spend: SpendFn, *, clock: Callable[[], float] = time.time, refresh: float = 5.0,
                 hold_seconds: float = HOLD_SECONDS) -> None:
        self._spend = spend
        self._clock = clock
        self._refresh = refresh
        self.hold_seconds = hold_seconds
        self._periods: dict[str, _Period] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, key_id: str) -> asyncio.Lock:
        return self._locks.setdefault(key_id, asyncio.Lock())

    async def reserve(self, key: ApiKey, amount: float) -> BudgetHold:
        """See :meth:`Ledger.reserve`."""
        assert key.budget_usd is not None and key.budget_period is not None
        now = self._clock()
        start, end = period_bounds(key.budget_period, now)
        label = period_label(key.budget_period, start)
        async with self._lock(key.id):
            state = self._periods.get(key.id)
            if state is None or state.label != label or now - state.loaded_at >= self._refresh:
                spent = await self._spend(key.id, start)
                holds = state.holds if state is not None and state.label == label else {}
                state = self._periods[key.id] = _Period(label, spent, now, holds)
            held = state.held(now)
            if not fits(key.budget_usd, state.spent, held, amount):
                raise _refusal(key, state.spent, held, amount, end, now)
            hold = BudgetHold(key.id, label, secrets.token_hex(8), amount)
            state.holds[hold.id] = (amount, now + self.hold_seconds)
            return hold

    async def settle(self, hold: BudgetHold, actual: float) -> None:
        """See :meth:`Ledger.settle` (the usage row is written before, so a refresh sees it)."""
        async with self._lock(hold.key_id):
            state = self._periods.get(hold.key_id)
            if state is None or state.label != hold.label:
                return
            state.holds.pop(hold.id, None)
            state.spent += actual

    async def extend(self, holds: list[BudgetHold]) -> None:
        """See :meth:`Ledger.extend` (no await: the loop is the lock)."""
        expires = self._clock() + self.hold_seconds
        for hold in holds:
            state = self._periods.get(hold.key_id)
            if state is not None and state.label == hold.label and hold.id in state.holds:
                state.holds[hold.id] = (hold.amount, expires)


RESERVE = """
local spent = redis.call('GET', KEYS[1])
if not spent then return {-1, '0', '0'} end
local now = tonumber(ARGV[4])
local held = 0
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local sep = string.find(entries[i + 1], '@', 1, true)
  local amount = tonumber(string.sub(entries[i + 1], 1, sep - 1))
  if tonumber(string.sub(entries[i + 1], sep + 1)) < now then
    redis.call('HDEL', KEYS[2], entries[i])
  else
    held = held + amount
  end
end
local budget = tonumber(ARGV[1])
if tonumber(spent) + held >= budget or tonumber(spent) + held + tonumber(ARGV[2]) > budget then
  return {0, spent, tostring(held)}
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2] .. '@' .. tostring(now + tonumber(ARGV[5])))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {1, spent, tostring(held)}
"""

SETTLE = """
if not redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])
elseif redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[4], ARGV[2])
  redis.call('PEXPIRE', KEYS[4], 60000)
end
return 1
"""

EXTEND = """
local until_ = ARGV[1]
for i = 2, #ARGV do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry then
    local sep = string.find(entry, '@', 1, true)
    redis.call('HSET', KEYS[1], ARGV[i], string.sub(entry, 1, sep) .. until_)
  end
end
return 1
"""

LOADED = """
local pending = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('SET', KEYS[1], tostring(tonumber(ARGV[1]) + pending), 'PX', ARGV[2])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""


class RedisLedger:
    """Budgets shared by every replica through Redis.

    Per key and period: ``spent`` (loaded once from the usage table, then
    increased at every settle) and ``held`` (a hash of reservations, each with
    an expiry). Loading takes a short lock; settles that land meanwhile go to
    ``pending`` and are added, so no cost is lost (one landing exactly during
    the load may be counted twice, never zero times).
    """

    def __init__(self, client: Any, prefix: str, spend: SpendFn, *, clock: Callable[[], float] = time.time,
                 load_wait: float = 10.0, hold_seconds: float = HOLD_SECONDS) -> None:
        self.client = client
        self.prefix = prefix
        self._spend = spend
        self._clock = clock
        self._load_wait = load_wait
        self.hold_seconds = hold_seconds
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._extend = client.register_script(EXTEND)
        self._loaded = client.register_script(LOADED)

    def _keys(self, key_id: str, label: str) -> tuple[str, str, str, str]:
        base = f"{self.prefix}:budget:{key_id}:{label}"
        return f"{base}:spent", f"{base}:held", f"{base}:loading", f"{base}:pending"

    async def _load(self, key_id: str, start: float, end: float, keys: tuple[str, str, str, str]) -> None:
        spent_key, _, loading, pending = keys
        if not await self.client.set(loading, "1", nx=True, px=int(self._load_wait * 1000)):
            await asyncio.sleep(0.05)  # another replica is loading it
            return
        spent = await self._spend(key_id, start)
        ttl_ms = int((end - self._clock() + 86400) * 1000)
        await self._loaded(keys=[spent_key, loading, pending], args=[repr(float(spent)), ttl_ms])

    async def reserve(self, key: ApiKey, amount: float) -> BudgetHold:
        """See :meth:`Ledger.reserve`."""
        assert key.budget_usd is not None and key.budget_period is not None
        now = self._clock()
        start, end = period_bounds(key.budget_period, now)
        label = period_label(key.budget_period, start)
        keys = self._keys(key.id, label)
        hold = BudgetHold(key.id, label, secrets.token_hex(8), amount)
        ttl_ms = int((end - now + 86400) * 1000)
        deadline = time.monotonic() + self._load_wait + 1
        try:
            while True:
                status, spent, held = await self._reserve(
                    keys=list(keys[:2]),
                    args=[repr(float(key.budget_usd)), repr(float(amount)), hold.id, int(now * 1000),
                          int(self.hold_seconds * 1000), ttl_ms])
                if int(status) == 1:
                    return hold
                if int(status) == 0:
                    raise _refusal(key, float(spent), float(held), amount, end, now)
                if time.monotonic() > deadline:
                    raise TimeoutError("budget spend was not loaded in time")
                await self._load(key.id, start, end, keys)
        except QuotaExceededError:
            raise
        except Exception as exc:  # redis.RedisError, OSError, TimeoutError
            raise unavailable(exc) from exc

    async def settle(self, hold: BudgetHold, actual: float) -> None:
        """See :meth:`Ledger.settle`: a marker per reservation makes a retried settle count once."""
        keys = [*self._keys(hold.key_id, hold.label), f"{self.prefix}:budget:settled:{hold.id}"]
        try:
            await self._settle(keys=keys, args=[hold.id, repr(float(actual)), int(self.hold_seconds * 1000)])
        except Exception as exc:
            raise unavailable(exc) from exc

    async def extend(self, holds: list[BudgetHold]) -> None:
        """See :meth:`Ledger.extend`: one script per key and period."""
        until = repr(float(self._clock() * 1000 + self.hold_seconds * 1000))
        groups: dict[tuple[str, str], list[str]] = {}
        for hold in holds:
            groups.setdefault((hold.key_id, hold.label), []).append(hold.id)
        try:
            for (key_id, label), ids in groups.items():
                await self._extend(keys=[self._keys(key_id, label)[1]], args=[until, *ids])
        except Exception as exc:
            raise unavailable(exc) from exc
