"""Window counters behind the rate limits: in-process, or in Redis to be shared by replicas.

A *hit* checks several counters and bumps them all or none: it fails if any
counter's ``used + amount`` would pass its limit. Counters expire on their own
(``ttl``), so old windows cost nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shoal.errors import LimitsUnavailableError


@dataclass(frozen=True)
class Check:
    """One counter of a hit: its name, its limit and how much this hit adds."""

    name: str
    limit: int
    amount: int


class Counters(Protocol):
    """Where window counters live."""

    async def hit(self, checks: Sequence[Check], ttl: float) -> tuple[bool, list[int]]:
        """All-or-nothing check-and-add; returns (admitted, each counter's value after the hit)."""
        ...

    async def add(self, name: str, amount: int, ttl: float) -> None:
        """Add ``amount`` (may be negative) without checking."""
        ...


class LocalCounters:
    """Counters in this process (one replica, or replicas that do not share limits)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[int, float]] = {}
        self._next_sweep = 0.0

    def _get(self, name: str, now: float) -> int:
        value, expires = self._values.get(name, (0, 0.0))
        return value if expires > now else 0

    def _sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
            self._next_sweep = now + 10.0

    async def hit(self, checks: Sequence[Check], ttl: float) -> tuple[bool, list[int]]:
        """See :meth:`Counters.hit` (atomic: no await inside)."""
        now = self._clock()
        self._sweep(now)
        used = [self._get(c.name, now) for c in checks]
        if any(u + c.amount > c.limit for u, c in zip(used, checks, strict=True)):
            return False, used
        after = []
        for u, c in zip(used, checks, strict=True):
            if c.amount:
                self._values[c.name] = (u + c.amount, now + ttl)
            after.append(u + c.amount)
        return True, after

    async def add(self, name: str, amount: int, ttl: float) -> None:
        """See :meth:`Counters.add`."""
        now = self._clock()
        self._values[name] = (self._get(name, now) + amount, now + ttl)


HIT = """
local n = #KEYS
local used = {}
for i = 1, n do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  if used[i] + tonumber(ARGV[2 * i]) > tonumber(ARGV[2 * i - 1]) then
    local out = {0}
    for j = 1, n do out[j + 1] = used[j] end
    return out
  end
end
local out = {1}
for i = 1, n do
  local amount = tonumber(ARGV[2 * i])
  if amount ~= 0 then
    used[i] = redis.call('INCRBY', KEYS[i], amount)
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * n + 1])
  end
  out[i + 1] = used[i]
end
return out
"""

ADD = """
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisCounters:
    """Counters in Redis: one Lua script per hit, so replicas cannot both pass the last slot."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._hit = client.register_script(HIT)
        self._add = client.register_script(ADD)

    async def hit(self, checks: Sequence[Check], ttl: float) -> tuple[bool, list[int]]:
        """See :meth:`Counters.hit`."""
        args: list[Any] = []
        for c in checks:
            args += [c.limit, c.amount]
        args.append(int(ttl * 1000))
        try:
            out = await self._hit(keys=[f"{self.prefix}:{c.name}" for c in checks], args=args)
        except Exception as exc:  # redis.RedisError, OSError: limits cannot be enforced
            raise unavailable(exc) from exc
        return bool(int(out[0])), [int(v) for v in out[1:]]

    async def add(self, name: str, amount: int, ttl: float) -> None:
        """See :meth:`Counters.add`."""
        try:
            await self._add(keys=[f"{self.prefix}:{name}"], args=[amount, int(ttl * 1000)])
        except Exception as exc:
            raise unavailable(exc) from exc


def unavailable(exc: BaseException) -> LimitsUnavailableError:
    """The 503 a client sees when Redis fails (without the URL, which may hold a password)."""
    return LimitsUnavailableError(
        f"Rate limits and budgets cannot be checked right now ({type(exc).__name__}). Retry shortly.",
        headers={"retry-after": "1"})
