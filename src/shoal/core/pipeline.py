"""The one request path: resolve the model, admit, run the backend, record stats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from shoal.backends.base import Backend, BackendFailure, ModelCard
from shoal.core.admission import Admission
from shoal.core.context import RequestContext
from shoal.core.types import (
    Finish,
    GenerationEvent,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from shoal.errors import BackendError, InvalidRequestError, ModelNotFoundError, ShoalError

log = logging.getLogger("shoal.requests")


class PipelineHooks(Protocol):
    """Admission control and accounting around every generation (rate limits, budgets, metering)."""

    async def admit(self, request: GenerationRequest, context: RequestContext, deployment: "Deployment") -> Any:
        """Check limits before generation starts (raise 429 to refuse); returns a token for ``finish``."""
        ...

    async def finish(self, context: RequestContext, deployment: "Deployment", stats: "GenerationStats",
                     token: Any) -> None:
        """Record what was used, once the generation has ended in any way."""
        ...


@dataclass
class Deployment:
    """A model served by one backend, with that backend's admission queue."""

    card: ModelCard
    backend: Backend
    admission: Admission


@dataclass
class GenerationStats:
    """Timings and usage of one generation, filled in as it runs."""

    model: str
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: float | None = None
    usage: Usage = field(default_factory=Usage)
    status: str = "in_progress"
    streamed_deltas: int = 0

    @property
    def ttft_ms(self) -> float | None:
        """Time to first token in milliseconds."""
        return None if self.first_token is None else (self.first_token - self.started) * 1000


def to_shoal_error(exc: BaseException) -> ShoalError:
    """Map a backend failure to the error a client sees."""
    if isinstance(exc, ShoalError):
        return exc
    if isinstance(exc, BackendFailure):
        if exc.client_error:
            return InvalidRequestError(exc.message, code=exc.code)
        return BackendError(exc.message, code=exc.code)
    return BackendError(f"The model failed while generating: {exc}")


class Generation:
    """A started generation: iterate it for events; it always frees its slot.

    The first event is fetched before the HTTP response starts, so failures
    that happen at once (a prompt too long for the context) still get a proper
    status instead of a broken stream.
    """

    def __init__(self, deployment: Deployment, events: AsyncIterator[GenerationEvent],
                 stats: GenerationStats, context: RequestContext | None = None,
                 hooks: PipelineHooks | None = None, token: Any = None) -> None:
        self.deployment = deployment
        self.stats = stats
        self.context = context or RequestContext()
        self._hooks = hooks
        self._token = token
        self._events = events
        self._first: GenerationEvent | None = None
        self._pending: asyncio.Future[GenerationEvent] | None = None
        self._released = False

    @property
    def model(self) -> str:
        """The id of the model that serves this generation."""
        return self.deployment.card.id

    async def prime(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the first event, raising early failures."""
        self._pending = asyncio.ensure_future(self._events.__anext__())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return
        task, self._pending = self._pending, None
        try:
            self._first = task.result()
        except StopAsyncIteration:
            self._first = None
        except Exception as exc:
            await self.aclose(status="failed")
            raise to_shoal_error(exc) from exc

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                try:
                    self._first = await pending
                except StopAsyncIteration:
                    return
            if self._first is not None:
                first, self._first = self._first, None
                self._observe(first)
                yield first
            async for event in self._events:
                self._observe(event)
                yield event
        except ShoalError:
            self.stats.status = "failed"
            raise
        except Exception as exc:
            self.stats.status = "failed"
            raise to_shoal_error(exc) from exc

    def _observe(self, event: GenerationEvent) -> None:
        if self.stats.first_token is None:
            self.stats.first_token = time.perf_counter()
        if isinstance(event, (TextDelta, ReasoningDelta, ToolCallDelta)):
            # Engines stream about one token per delta; this is what a cancelled
            # stream is accounted for, since its final usage never arrives.
            self.stats.streamed_deltas += 1
        elif isinstance(event, Finish):
            self.stats.usage = event.usage
            self.stats.status = "completed" if event.reason != "length" else "incomplete"

    async def aclose(self, status: str | None = None) -> None:
        """Stop the generation (if still running) and free the slot, once."""
        if self._released:
            return
        self._released = True
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
        try:
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self.deployment.admission.release()
            stats = self.stats
            stats.finished = time.perf_counter()
            if status:
                stats.status = status
            elif stats.status == "in_progress":
                stats.status = "cancelled"
            if stats.status in ("cancelled", "failed") and not stats.usage.output_tokens:
                stats.usage = Usage(output_tokens=stats.streamed_deltas)
            log.info(
                "model=%s status=%s input=%d cached=%d output=%d ttft_ms=%s total_ms=%.1f",
                stats.model, stats.status, stats.usage.input_tokens, stats.usage.cached_tokens,
                stats.usage.output_tokens,
                "-" if stats.ttft_ms is None else f"{stats.ttft_ms:.1f}",
                (stats.finished - stats.started) * 1000,
            )
            if self._hooks is not None:
                # Shielded: a client that went away must still be accounted for.
                await asyncio.shield(self._hooks.finish(self.context, self.deployment, stats, self._token))


class Pipeline:
    """Holds the deployments and starts generations on them."""

    def __init__(self, deployments: list[Deployment], *, prime_timeout: float = 10.0,
                 hooks: PipelineHooks | None = None) -> None:
        self.deployments = deployments
        self.prime_timeout = prime_timeout
        self.hooks = hooks
        self._by_name: dict[str, Deployment] = {}
        for dep in deployments:
            for name in (dep.card.id, *dep.card.aliases):
                self._by_name.setdefault(name, dep)

    def cards(self, context: RequestContext | None = None) -> list[ModelCard]:
        """Every served model the caller may use, in configuration order."""
        return [dep.card for dep in self.deployments if context is None or context.may_use(dep.card.id)]

    def resolve(self, model: str, context: RequestContext | None = None) -> Deployment:
        """The deployment serving ``model`` (by id or alias), or a 404 (also for models out of scope)."""
        dep = self._by_name.get(model)
        if dep is None or (context is not None and not context.may_use(dep.card.id)):
            raise ModelNotFoundError(model)
        return dep

    async def start(self, request: GenerationRequest, context: RequestContext | None = None) -> Generation:
        """Admit ``request`` and start it; raises 404 / 429 / 503 / early backend errors."""
        context = context or RequestContext()
        dep = self.resolve(request.model, context)
        token = await self.hooks.admit(request, context, dep) if self.hooks is not None else None
        try:
            await dep.admission.acquire()
        except BaseException:
            if self.hooks is not None:
                await self.hooks.finish(context, dep, GenerationStats(model=dep.card.id, status="rejected"), token)
            raise
        stats = GenerationStats(model=dep.card.id)
        try:
            events = dep.backend.generate(request)
        except Exception as exc:
            dep.admission.release()
            stats.status = "failed"
            if self.hooks is not None:
                await self.hooks.finish(context, dep, stats, token)
            raise to_shoal_error(exc) from exc
        generation = Generation(dep, events, stats, context, self.hooks, token)
        try:
            await generation.prime(self.prime_timeout)
        except BaseException:
            await generation.aclose(status="failed")
            raise
        return generation

    async def aclose(self) -> None:
        """Close every backend."""
        for dep in self.deployments:
            await dep.backend.aclose()
