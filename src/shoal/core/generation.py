"""One started operation: its events, its stats, and the slot it always gives back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shoal.core.backend import BackendFailure
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.core.operation import Operation
from shoal.core.types import Finish, GenerationEvent, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from shoal.errors import BackendError, InvalidRequestError, OverloadedError, ShoalError

log = logging.getLogger("shoal.requests")


class PipelineHooks(Protocol):
    """Admission control and accounting around every generation (rate limits, budgets, metering)."""

    async def admit(self, request: Operation, context: RequestContext,
                    candidates: Sequence[Deployment]) -> Any:
        """Check limits before generation starts (raise 429 to refuse); returns a token for ``finish``.

        ``candidates`` are the deployments the request may be tried on, in order (reservations
        must cover the most any of them could use).
        """
        ...

    def finish(self, context: RequestContext, deployment: Deployment, stats: GenerationStats,
               token: Any) -> Awaitable[None] | None:
        """Record what was used, once the generation has ended in any way.

        Returns what is left to do (settling reservations) as an awaitable, or None; the
        pipeline finishes it even for a client that went away.
        """
        ...


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
        if exc.status == 429:
            wait = max(1, round(exc.retry_after or 1))
            return OverloadedError(exc.message, code=exc.code, headers={"retry-after": str(wait)})
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
        self.on_close: Callable[[Generation], None] | None = None
        """Called once the generation has ended (the router's health and latency bookkeeping)."""

    @property
    def model(self) -> str:
        """The id of the model that serves this generation."""
        return self.deployment.card.id

    async def prime(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` s for the first event (no limit: ``None``), raising early failures.

        A streamed answer starts its response after ``timeout`` even without an event (then
        keep-alives flow); a whole answer has nothing to send before it is done, so it waits
        without the extra task a timeout needs.
        """
        try:
            if timeout is None:
                self._first = await self._events.__anext__()
                return
            self._pending = asyncio.ensure_future(self._events.__anext__())
            done, _ = await asyncio.wait({self._pending}, timeout=timeout)
            if not done:
                return
            task, self._pending = self._pending, None
            self._first = task.result()
        except StopAsyncIteration:
            self._first = None
        except Exception as exc:
            await self.aclose(status="failed")
            raise to_shoal_error(exc) from exc

    def __aiter__(self) -> "Generation":
        return self

    async def __anext__(self) -> GenerationEvent:
        # A plain async iterator, not an async generator: asyncio registers every async
        # generator in a weak set, a cost each relayed request paid for this layer.
        try:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._first = await pending
            if self._first is not None:
                event, self._first = self._first, None
            else:
                event = await self._events.__anext__()
        except StopAsyncIteration:
            raise
        except ShoalError:
            self.stats.status = "failed"
            raise
        except Exception as exc:
            self.stats.status = "failed"
            raise to_shoal_error(exc) from exc
        self._observe(event)
        return event

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
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "model=%s status=%s input=%d cached=%d output=%d ttft_ms=%s total_ms=%.1f",
                    stats.model, stats.status, stats.usage.input_tokens, stats.usage.cached_tokens,
                    stats.usage.output_tokens,
                    "-" if stats.ttft_ms is None else f"{stats.ttft_ms:.1f}",
                    (stats.finished - stats.started) * 1000,
                )
            if self.on_close is not None:
                self.on_close(self)
            if self._hooks is not None:
                rest = self._hooks.finish(self.context, self.deployment, stats, self._token)
                if rest is not None:
                    # Shielded: a client that went away must still be accounted for.
                    await asyncio.shield(rest)


