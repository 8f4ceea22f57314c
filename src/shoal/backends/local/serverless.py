"""Serverless local models: loaded on their first request, unloaded when idle, sharing a memory limit.

A :class:`ServerlessBackend` starts unloaded. The first request loads the model
(in a thread, logging progress); requests that arrive meanwhile wait on the
same load. After ``idle_unload_seconds`` with nothing in flight it unloads.

Every local model of a server registers with one :class:`MemoryPool`: dedicated
(pinned) models count against the limit and are never evicted; before a
serverless model loads, the pool makes room by unloading the least recently
used idle serverless models. If the models in the way are busy (or pinned) the
load waits, bounded, then fails with 503 and ``retry-after``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from shoal.core.backend import BackendFailure, BaseBackend, ModelCard
from shoal.core.types import GenerationEvent, GenerationRequest
from shoal.errors import OverloadedError

log = logging.getLogger("shoal.local")

MIB = 1024 * 1024


class Engine(Protocol):
    """What a serverless backend loads: the local engine (or a test double)."""

    def load(self) -> float:
        """Load the model (blocking); returns the seconds it took."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream events for ``request``."""
        ...

    async def aclose(self) -> None:
        """Free the model."""
        ...

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """The prompt tokens of ``request`` (None if the engine cannot count)."""
        ...


def rss_bytes() -> int:
    """This process's resident memory (0 where /proc is missing)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class MemoryPool:
    """The memory budget shared by every local model of one server.

    ``limit`` is in bytes (None = no limit). Members are dedicated models
    (:meth:`pin`) and serverless backends (:meth:`reserve` before loading,
    :meth:`release` after unloading). ``wait_seconds`` bounds how long a load
    waits for busy models to go idle before it gives up with a 503.
    """

    def __init__(self, limit: int | None = None, wait_seconds: float = 5.0) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self.pinned: dict[str, int] = {}
        self.members: list[ServerlessBackend] = []
        self._changed: asyncio.Event | None = None

    @property
    def used(self) -> int:
        """Bytes held by pinned models and by loaded (or loading) serverless ones."""
        return sum(self.pinned.values()) + sum(m.size for m in self.members if m.holds_memory)

    def pin(self, name: str, size: int) -> None:
        """Count a dedicated model (loaded at start, never unloaded)."""
        self.pinned[name] = size
        if self.limit is not None and self.used > self.limit:
            log.warning("dedicated models use %d MiB, over the local memory limit of %d MiB; "
                        "serverless models will not fit", self.used // MIB, self.limit // MIB)

    def join(self, member: ServerlessBackend) -> None:
        """Register a serverless backend."""
        self.members.append(member)
        if self.limit is not None and member.size + sum(self.pinned.values()) > self.limit:
            log.warning("serverless %s (~%d MiB) can never fit in the local memory limit of %d MiB",
                        member.model_id, member.size // MIB, self.limit // MIB)

    def notify(self) -> None:
        """Wake loads waiting for room (a model went idle or unloaded)."""
        if self._changed is not None:
            self._changed.set()

    def _fits(self, member: ServerlessBackend) -> bool:
        """Whether ``member`` fits beside everything else that holds memory."""
        if self.limit is None:
            return True
        others = sum(self.pinned.values()) + sum(m.size for m in self.members if m is not member and m.holds_memory)
        return others + member.size <= self.limit

    async def reserve(self, member: ServerlessBackend) -> None:
        """Make room for ``member`` (evicting idle models, least recently used first), or 503 after waiting."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self._fits(member):
                return
            idle = sorted((m for m in self.members if m is not member and m.evictable), key=lambda m: m.last_used)
            for victim in idle:
                await victim.unload(reason="evicted to make room for " + member.model_id)
                if self._fits(member):
                    return
            if self._fits(member):
                return
            left = deadline - time.monotonic()
            if left <= 0 or (self.limit is not None and member.size + sum(self.pinned.values()) > self.limit):
                busy = [m.model_id for m in self.members if m is not member and m.holds_memory]
                raise OverloadedError(
                    f"No room to load {member.model_id!r}: the local memory limit of {(self.limit or 0) // MIB} MiB "
                    f"is held by busy or dedicated models ({', '.join(busy) or 'dedicated only'}). Retry shortly.",
                    code="model_memory_busy", headers={"retry-after": "2"})
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            log.info("serverless %s waits for memory (%d of %d MiB in use by busy models)",
                     member.model_id, self.used // MIB, (self.limit or 0) // MIB)
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                pass


class ServerlessBackend(BaseBackend):
    """A local model loaded on demand and unloaded when idle (implements ``Backend``).

    ``factory`` makes a fresh, unloaded engine for each load; ``size`` is the
    memory it is expected to take (bytes; the GGUF file size by default).
    """

    mode = "serverless"

    def __init__(self, name: str, card: ModelCard, factory: Callable[[], Engine], *, capacity: int, size: int,
                 pool: MemoryPool, idle_unload_seconds: float = 300.0, progress_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.card = card
        self.capacity = capacity
        self.size = size
        self.pool = pool
        self.idle_unload_seconds = idle_unload_seconds
        self.progress_seconds = progress_seconds
        self.clock = clock
        self._factory = factory
        self._engine: Engine | None = None
        self._loading: asyncio.Task[Engine] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._unloading: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.last_used = clock()
        self.loads = 0
        self.unloads = 0
        self.load_seconds: float | None = None
        pool.join(self)

    @property
    def model_id(self) -> str:
        """The catalog id of the model."""
        return self.card.id

    @property
    def state(self) -> str:
        """``unloaded``, ``loading`` or ``loaded``."""
        if self._engine is not None:
            return "loaded"
        return "loading" if self._loading is not None else "unloaded"

    @property
    def holds_memory(self) -> bool:
        """Whether this model's memory counts against the pool (loaded or being loaded)."""
        return self._engine is not None or self._loading is not None

    @property
    def evictable(self) -> bool:
        """Loaded, nothing in flight and nobody waiting on it."""
        return self._engine is not None and self.in_flight == 0

    def models(self) -> list[ModelCard]:
        """The catalog card."""
        return [self.card]

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """The loaded engine's count; None while unloaded (counting must not load a model)."""
        engine = self._engine
        return None if engine is None else await engine.count_tokens(request)

    def status(self) -> dict[str, Any]:
        """Mode and live state, for the models listing and metrics."""
        return {"mode": self.mode, "state": self.state, "idle_unload_seconds": self.idle_unload_seconds,
                "loads": self.loads, "unloads": self.unloads}

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Load the model if needed (waiting with the other requests), then stream its events."""
        self.in_flight += 1
        self._cancel_idle()
        try:
            engine = await self._ensure_loaded()
            async for event in engine.generate(request):
                yield event
        finally:
            self.in_flight -= 1
            self.last_used = self.clock()
            if self.in_flight == 0:
                self._arm_idle()
                self.pool.notify()

    async def _ensure_loaded(self) -> Engine:
        if self._unloading is not None:
            await asyncio.shield(self._unloading)
        if self._engine is not None:
            return self._engine
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        loading = self._loading
        # Shielded: a caller that gives up must not cancel the load the others wait on.
        return await asyncio.shield(loading)

    async def _load(self) -> Engine:
        try:
            await self.pool.reserve(self)
            log.info("loading %s for a request (serverless, ~%d MiB)…", self.model_id, self.size // MIB)
            engine = self._factory()
            before = rss_bytes()
            started = time.perf_counter()
            work = asyncio.ensure_future(asyncio.to_thread(engine.load))
            while True:
                done, _ = await asyncio.wait({work}, timeout=self.progress_seconds)
                if done:
                    break
                log.info("still loading %s (%.0f s)…", self.model_id, time.perf_counter() - started)
            try:
                work.result()
            except Exception as exc:
                log.error("loading %s failed: %s", self.model_id, exc)
                raise BackendFailure(f"The model {self.model_id} failed to load: {exc}") from exc
            self.load_seconds = time.perf_counter() - started
            self.loads += 1
            grown = max(0, rss_bytes() - before)
            log.info("loaded %s in %.1f s (serverless, +%d MiB RSS)", self.model_id, self.load_seconds, grown // MIB)
            self._engine = engine
            return engine
        finally:
            self._loading = None
            if self._engine is None:
                self.pool.notify()

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _arm_idle(self) -> None:
        self._cancel_idle()
        if self._engine is None:
            return
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.idle_unload_seconds, self._idle_fired)

    def _idle_fired(self) -> None:
        self._idle = None
        if self.evictable:
            self._unloading = asyncio.ensure_future(self.unload(reason=f"idle for {self.idle_unload_seconds:g} s"))

    async def unload(self, reason: str = "") -> None:
        """Free the model now (only when nothing is in flight)."""
        engine, self._engine = self._engine, None
        self._cancel_idle()
        if engine is None:
            return
        try:
            await engine.aclose()
        finally:
            self.unloads += 1
            self._unloading = None
            log.info("unloaded %s (serverless%s)", self.model_id, f", {reason}" if reason else "")
            self.pool.notify()

    async def health(self) -> dict[str, Any]:
        """``ok`` whether loaded or not: a serverless model loads when asked."""
        return {"status": "ok", **self.status(), "load_seconds": self.load_seconds}

    async def aclose(self) -> None:
        """Stop the timers and any load; free the model."""
        self._cancel_idle()
        loading, self._loading = self._loading, None
        if loading is not None:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
        await self.unload(reason="shutting down")
