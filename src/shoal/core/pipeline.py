"""The one request path: plan the candidates, admit, run the backend, fail over before the first byte."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import NoReturn, Protocol

from shoal.core.backend import BackendFailure, ModelCard
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment, Planner
from shoal.core.generation import Generation, GenerationStats, PipelineHooks, to_shoal_error
from shoal.core.operation import Operation
from shoal.errors import GatewayTimeoutError, OverloadedError, ShoalError

log = logging.getLogger("shoal.requests")


class Pipeline:
    """Starts each operation (a generation, an embedding) on the best deployment that answers.

    ``router`` plans the candidates (``shoal.routing.Router`` in the app); the pipeline owns
    admission, hooks (limits and metering) and failover, the same for every operation.

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

    def __init__(self, router: Planner, *, prime_timeout: float = 10.0, hooks: PipelineHooks | None = None,
                 retries: int = 1, backoff: float = 0.25, max_backoff: float = 5.0,
                 deadline: float = 60.0, observer: PipelineObserver | None = None) -> None:
        self.router = router
        self.prime_timeout = prime_timeout
        self.hooks = hooks
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.deadline = deadline
        self.observer = observer

    @property
    def deployments(self) -> Sequence[Deployment]:
        """Every deployment the router balances now (replicas join and leave at run time)."""
        return self.router.deployments

    def cards(self, context: RequestContext | None = None) -> list[ModelCard]:
        """Every served model and router the caller may use, in configuration order."""
        return self.router.cards(context)

    def resolve(self, model: str, context: RequestContext | None = None) -> Deployment:
        """The deployment ``model`` (id, alias or router) goes to first, or a 404 (also out of scope)."""
        return self.router.resolve(model, context)

    async def start(self, request: Operation, context: RequestContext | None = None) -> Generation:
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

    async def _failover(self, request: Operation, context: RequestContext, candidates: list[Deployment],
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
                if round_ and not dep.available():
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

    def _give_up(self, request: Operation, error: BaseException | None,
                 tried: list[tuple[Deployment, GenerationStats]]) -> NoReturn:
        """Raise why ``request`` got no first byte: 504 for a timeout (the deadline's or the last upstream's)."""
        cause = error.__cause__ if error is not None else None
        if error is not None and not (isinstance(cause, BackendFailure) and cause.code == "upstream_timeout"):
            raise error
        names = ", ".join(dict.fromkeys(dep.name for dep, _ in tried)) or "none"
        raise GatewayTimeoutError(
            f"No deployment of {request.model!r} started answering in time (deadline {self.deadline:g} s; "
            f"tried {len(tried)} time(s): {names}). Retry later.") from error

    async def _attempt(self, dep: Deployment, request: Operation, context: RequestContext,
                       tried: list[tuple[Deployment, GenerationStats]]) -> Generation:
        """One try on ``dep``: take a slot, start, wait for the first event."""
        await dep.admission.acquire()
        stats = GenerationStats(model=dep.card.id)
        tried.append((dep, stats))
        dep.breaker.attempt()
        try:
            events = request.run(dep.backend)
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
