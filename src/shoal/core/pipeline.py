"""The one request path: resolve the model, admit, run the backend, record stats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

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
from shoal.errors import BackendError, GatewayTimeoutError, InvalidRequestError, OverloadedError, ShoalError
from shoal.routing.breaker import CircuitBreaker
from shoal.routing.router import Router, RouterSpec

log = logging.getLogger("shoal.requests")


class PipelineHooks(Protocol):
    """Admission control and accounting around every generation (rate limits, budgets, metering)."""

    async def admit(self, request: GenerationRequest, context: RequestContext,
                    candidates: Sequence["Deployment"]) -> Any:
        """Check limits before generation starts (raise 429 to refuse); returns a token for ``finish``.

        ``candidates`` are the deployments the request may be tried on, in order (reservations
        must cover the most any of them could use).
        """
        ...

    def finish(self, context: RequestContext, deployment: "Deployment", stats: "GenerationStats",
               token: Any) -> Awaitable[None] | None:
        """Record what was used, once the generation has ended in any way.

        Returns what is left to do (settling reservations) as an awaitable, or None; the
        pipeline finishes it even for a client that went away.
        """
        ...


@dataclass
class Deployment:
    """A model served by one backend, with that backend's admission queue.

    ``name`` says which deployment served a request (``x-shoal-deployment``);
    ``breaker`` and ``ttft_ewma`` are its live health, used by the router.
    """

    card: ModelCard
    backend: Backend
    admission: Admission
    name: str = ""
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    ttft_ewma: float | None = None
    reserved_for: frozenset[str] | None = None
    """Key ids or names that may use this deployment (None = every caller)."""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.backend.name

    def admits(self, context: RequestContext) -> bool:
        """Whether the caller may use this deployment (a reserved one takes only its keys)."""
        if self.reserved_for is None:
            return True
        return bool(self.reserved_for & {context.key_id, getattr(context.key, "name", None)})

    def status(self) -> dict[str, Any] | None:
        """The backend's live mode and state (local models), or None."""
        status = getattr(self.backend, "status", None)
        found = status() if status is not None else None
        return None if found is None else {"name": self.name, **found}


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


class Pipeline:
    """Holds the deployments and routers; starts each generation on the best deployment that answers.

    Failover happens only before the first event: a retryable failure (connect
    error, timeout, 5xx, 429) moves on to the next candidate, and after a round
    over all of them it retries (``retries`` rounds) after an exponential backoff
    that honours the upstreams' ``retry-after`` (up to ``max_backoff`` seconds).

    ``deadline`` bounds the whole of it: a streamed request that has no first event
    (nor a started response, see ``prime_timeout``) ``deadline`` seconds after it
    was routed stops with a 504 ``upstream_timeout``, however many deployments hang.
    A whole (non-streamed) answer has no first byte before it is complete, so for
    it the deadline only stops starting new attempts. Giving up after the last
    candidate's failure answers 504 if that failure was a timeout, else its own error (502).
    """

    def __init__(self, deployments: list[Deployment], *, prime_timeout: float = 10.0,
                 hooks: PipelineHooks | None = None, routers: Sequence[RouterSpec] = (),
                 retries: int = 1, backoff: float = 0.25, max_backoff: float = 5.0,
                 deadline: float = 60.0, observer: "PipelineObserver | None" = None) -> None:
        self.deployments = deployments
        self.prime_timeout = prime_timeout
        self.hooks = hooks
        self.router = Router(deployments, routers)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.deadline = deadline
        self.observer = observer

    def cards(self, context: RequestContext | None = None) -> list[ModelCard]:
        """Every served model and router the caller may use, in configuration order."""
        return self.router.cards(context)

    def resolve(self, model: str, context: RequestContext | None = None) -> Deployment:
        """The deployment ``model`` (id, alias or router) goes to first, or a 404 (also out of scope)."""
        return self.router.resolve(model, context)

    async def start(self, request: GenerationRequest, context: RequestContext | None = None) -> Generation:
        """Admit ``request`` and start it on the first candidate that answers.

        Raises 404 / 400 (no capable deployment) / 429 / 503 / early backend errors.
        The hooks see one ``admit`` and exactly one ``finish``, whatever the attempts.
        """
        context = context or RequestContext()
        plan = self.router.plan(request, context)
        first = plan.candidates[0]
        token = await self.hooks.admit(request, context, plan.candidates) if self.hooks is not None else None
        tried: list[tuple[Deployment, GenerationStats]] = []
        try:
            generation = await self._failover(request, context, plan.candidates, tried)
        except BaseException:
            if self.hooks is not None:
                dep, stats = tried[-1] if tried else (first, GenerationStats(model=first.card.id, status="rejected"))
                rest = self.hooks.finish(context, dep, stats, token)
                if rest is not None:
                    await rest
            raise
        generation._hooks, generation._token = self.hooks, token
        context.headers["x-shoal-deployment"] = generation.deployment.name
        return generation

    async def _failover(self, request: GenerationRequest, context: RequestContext, candidates: list[Deployment],
                        tried: list[tuple[Deployment, GenerationStats]]) -> Generation:
        error: BaseException | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline
        for round_ in range(self.retries + 1):
            if round_:
                hint = _retry_after(error)
                wait = min(self.max_backoff, self.backoff * 2 ** (round_ - 1))
                if hint is not None:
                    if hint > self.max_backoff:
                        break
                    wait = max(wait, hint)
                if loop.time() + wait >= deadline:
                    break
                await asyncio.sleep(wait)
            for dep in candidates:
                if round_ and not dep.breaker.available():
                    continue
                if loop.time() >= deadline:
                    return self._give_up(request, error, tried)
                try:
                    if not request.stream:
                        return await self._attempt(dep, request, context, tried)
                    limit = asyncio.timeout_at(deadline)
                    try:
                        async with limit:
                            return await self._attempt(dep, request, context, tried)
                    except TimeoutError:
                        if not limit.expired():
                            raise
                        # Not the deployment's failure (it may have had only the last moments):
                        # its breaker is untouched.
                        log.warning("deployment %s had not answered when the %g s deadline passed", dep.name,
                                    self.deadline)
                        return self._give_up(request, None, tried)
                except ShoalError as exc:
                    cause = exc.__cause__
                    if isinstance(cause, BackendFailure):
                        if not cause.retryable:
                            raise
                        dep.breaker.failure(cause.retry_after)
                        if self.observer is not None:
                            self.observer.attempt_failed(dep, cause)
                        log.warning("deployment %s failed before the first byte (%s); trying the next",
                                    dep.name, cause.code or cause.status or "error")
                    elif not isinstance(exc, OverloadedError):
                        raise
                    error = exc
        return self._give_up(request, error, tried)

    def _give_up(self, request: GenerationRequest, error: BaseException | None,
                 tried: list[tuple[Deployment, GenerationStats]]) -> NoReturn:
        """Raise why ``request`` got no first byte: 504 for a timeout (the deadline's or the last upstream's)."""
        cause = error.__cause__ if error is not None else None
        if error is not None and not (isinstance(cause, BackendFailure) and cause.code == "upstream_timeout"):
            raise error
        names = ", ".join(dict.fromkeys(dep.name for dep, _ in tried)) or "none"
        raise GatewayTimeoutError(
            f"No deployment of {request.model!r} started answering in time (deadline {self.deadline:g} s; "
            f"tried {len(tried)} time(s): {names}). Retry later.") from error

    async def _attempt(self, dep: Deployment, request: GenerationRequest, context: RequestContext,
                       tried: list[tuple[Deployment, GenerationStats]]) -> Generation:
        """One try on ``dep``: take a slot, start, wait for the first event."""
        await dep.admission.acquire()
        stats = GenerationStats(model=dep.card.id)
        tried.append((dep, stats))
        dep.breaker.attempt()
        try:
            events = dep.backend.generate(request)
        except Exception as exc:
            dep.admission.release()
            stats.status = "failed"
            raise to_shoal_error(exc) from exc
        generation = Generation(dep, events, stats, context)
        try:
            await generation.prime(self.prime_timeout if request.stream else None)
        except BaseException:
            await generation.aclose(status="failed")
            raise
        if generation._first is not None or generation._pending is None:
            dep.breaker.success()
        generation.on_close = self._closed
        return generation

    def _closed(self, generation: Generation) -> None:
        """Keep the deployment's latency average and breaker up to date; tell the observer."""
        dep, stats = generation.deployment, generation.stats
        if stats.ttft_ms is not None:
            dep.ttft_ewma = stats.ttft_ms if dep.ttft_ewma is None else 0.8 * dep.ttft_ewma + 0.2 * stats.ttft_ms
        if stats.status == "failed":
            dep.breaker.failure()
        elif stats.status in ("completed", "incomplete"):
            dep.breaker.success()
        if self.observer is not None:
            self.observer.closed(generation)

    async def aclose(self) -> None:
        """Close every backend (once each)."""
        seen: set[int] = set()
        for dep in self.deployments:
            if id(dep.backend) not in seen:
                seen.add(id(dep.backend))
                await dep.backend.aclose()


class PipelineObserver(Protocol):
    """Receives what the pipeline sees (metrics)."""

    def attempt_failed(self, deployment: Deployment, failure: BackendFailure) -> None:
        """A deployment failed before its first event (the request moved on)."""
        ...

    def closed(self, generation: Generation) -> None:
        """A generation ended (any status)."""
        ...


def _retry_after(error: BaseException | None) -> float | None:
    cause = error.__cause__ if error is not None else None
    return cause.retry_after if isinstance(cause, BackendFailure) else None
