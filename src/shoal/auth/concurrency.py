"""Per-key concurrency: how many generations one key may have in flight (running or queued) at once.

Every model's admission is slots plus a bounded FIFO queue shared by all callers,
so without a cap one key sending more than slots + queue requests fills it and
every other key gets 503 until the flood ends. With a cap, a key past it gets
429 ``concurrency_limit_exceeded`` (``retry-after: 1``) before it takes a place
in any queue, so the others always find room.

A generation holds a *lease* from admission to its end. In-process the leases
are a set per key (the pipeline releases every lease it took). In Redis they are
a sorted set per key scored by expiry: replicas share the cap, and the leases of
a replica that crashed expire after ``ttl`` (the meter renews live ones).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shoal.auth.counters import unavailable
from shoal.errors import RateLimitError

LEASE_SECONDS = 120.0
"""A Redis lease not renewed for this long (its replica is gone) stops counting."""


@dataclass(frozen=True)
class Lease:
    """One generation's place in its key's in-flight count."""

    key_id: str
    id: str


class InFlight(Protocol):
    """Where in-flight leases live."""

    expires: bool
    """Whether leases lapse unless renewed."""

    async def enter(self, lease: Lease, limit: int, ttl: float) -> tuple[bool, int]:
        """Take ``lease`` if the key has fewer than ``limit``; returns (taken, leases in flight)."""
        ...

    async def leave(self, lease: Lease) -> None:
        """Give ``lease`` back (a lease not held is ignored)."""
        ...

    async def renew(self, leases: Sequence[Lease], ttl: float) -> None:
        """Push the expiry of still-held ``leases`` ``ttl`` seconds away."""
        ...


class LocalInFlight:
    """Leases in this process: exact, and nothing to expire (every lease is given back here)."""

    expires = False

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    async def enter(self, lease: Lease, limit: int, ttl: float) -> tuple[bool, int]:
        """See :meth:`InFlight.enter` (atomic: no await inside)."""
        held = self._held.setdefault(lease.key_id, set())
        if len(held) >= limit:
            return False, len(held)
        held.add(lease.id)
        return True, len(held)

    async def leave(self, lease: Lease) -> None:
        """See :meth:`InFlight.leave`."""
        held = self._held.get(lease.key_id)
        if held is not None:
            held.discard(lease.id)
            if not held:
                del self._held[lease.key_id]

    async def renew(self, leases: Sequence[Lease], ttl: float) -> None:
        """Nothing expires in-process."""


ENTER = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, n + 1}
"""



class RedisInFlight:
    """Leases shared by replicas: a sorted set per key (lease id scored by its expiry, in ms)."""

    expires = True

    def __init__(self, client: Any, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self._enter = client.register_script(ENTER)

    def _name(self, key_id: str) -> str:
        return f"{self.prefix}:inflight:{key_id}"

    async def enter(self, lease: Lease, limit: int, ttl: float) -> tuple[bool, int]:
        """See :meth:`InFlight.enter` (one Lua script: replicas cannot both take the last place)."""
        try:
            ok, n = await self._enter(keys=[self._name(lease.key_id)],
                                      args=[int(self.clock() * 1000), limit, int(ttl * 1000), lease.id])
        except Exception as exc:  # redis.RedisError, OSError: the cap cannot be enforced
            raise unavailable(exc) from exc
        return bool(int(ok)), int(n)

    async def leave(self, lease: Lease) -> None:
        """See :meth:`InFlight.leave`."""
        try:
            await self.client.zrem(self._name(lease.key_id), lease.id)
        except Exception as exc:
            raise unavailable(exc) from exc

    async def renew(self, leases: Sequence[Lease], ttl: float) -> None:
        """See :meth:`InFlight.renew`: one ``ZADD XX`` per key, in one round trip."""
        expires = int((self.clock() + ttl) * 1000)
        by_key: dict[str, list[str]] = {}
        for lease in leases:
            by_key.setdefault(lease.key_id, []).append(lease.id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key_id, ids in by_key.items():
                    name = self._name(key_id)
                    pipe.zadd(name, dict.fromkeys(ids, expires), xx=True)
                    pipe.pexpire(name, int(ttl * 1000))
                await pipe.execute()
        except Exception as exc:
            raise unavailable(exc) from exc


class ConcurrencyLimiter:
    """Caps the generations each key has in flight at ``limit`` (0: no cap)."""

    def __init__(self, store: InFlight, limit: int, ttl: float = LEASE_SECONDS) -> None:
        self.store = store
        self.limit = limit
        self.ttl = ttl

    @property
    def expires(self) -> bool:
        """Whether the leases handed out must be renewed while their generations run."""
        return self.limit > 0 and self.store.expires

    async def enter(self, key_id: str) -> Lease | None:
        """A lease for one more generation of ``key_id``, or 429 ``concurrency_limit_exceeded``."""
        if self.limit <= 0:
            return None
        lease = Lease(key_id, secrets.token_hex(8))
        ok, _ = await self.store.enter(lease, self.limit, self.ttl)
        if not ok:
            raise RateLimitError(
                f"Key {key_id} already has {self.limit} requests in flight, the most one key may have at once. "
                "Wait for one to finish, then retry.",
                code="concurrency_limit_exceeded", headers={"retry-after": "1"})
        return lease

    async def leave(self, lease: Lease) -> None:
        """Give a lease back."""
        await self.store.leave(lease)

    async def renew(self, leases: Sequence[Lease]) -> None:
        """Keep live leases from expiring (Redis)."""
        if leases:
            await self.store.renew(leases, self.ttl)
