"""The pipeline hooks of a multi-tenant Shoal: limits before a generation, metering after.

``admit`` takes a place in the key's in-flight cap, reserves tokens-per-minute and
the request's maximum cost (429 if any does not fit) before anything is generated;
``finish`` runs once for every admitted generation, however it ended, and records a
usage row, settles the token and budget reservations to the real counts, and
releases them. While generations run, one task per meter extends their budget
reservations and in-flight leases, so neither lapses under a long generation; a
settle that fails (Redis or the database away) is retried in the background with
backoff, and logged as an error if it never lands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

from shoal.auth.concurrency import ConcurrencyLimiter, Lease, LocalInFlight
from shoal.auth.ratelimit import RateLimiter, TokenHold
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.core.generation import GenerationStats
from shoal.core.operation import Operation
from shoal.core.types import Usage
from shoal.storage.keys import ApiKey
from shoal.storage.usage import UsageRecord, UsageStore
from shoal.usage.budget import BudgetHold, Ledger
from shoal.usage.estimate import max_cost
from shoal.usage.pricing import PriceTable

log = logging.getLogger("shoal.usage")

SETTLE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""Seconds between the retries of a failed settle (about a minute in all)."""
RENEW_SECONDS = 30.0
"""How often running generations' reservations and leases are extended (well inside both lifetimes)."""


@dataclass
class Ticket:
    """What ``admit`` reserved for one generation, handed back to ``finish``."""

    started: float
    request: Operation | None = None
    tokens: TokenHold | None = None
    budget: BudgetHold | None = None
    lease: Lease | None = None

    @cached_property
    def estimated_input(self) -> int:
        """The prompt's likely size in tokens, worked out only when a limit or an interrupted stream needs it."""
        return self.request.typical_input_tokens() if self.request is not None else 0


class Meter:
    """Implements ``PipelineHooks``: in-flight cap, rate limits and budgets in ``admit``, metering in ``finish``."""

    def __init__(self, usage: UsageStore, prices: PriceTable, limiter: RateLimiter, ledger: Ledger,
                 concurrency: ConcurrencyLimiter | None = None, *, renew_every: float = RENEW_SECONDS,
                 settle_backoff: Sequence[float] = SETTLE_BACKOFF) -> None:
        self.usage = usage
        self.prices = prices
        self.limiter = limiter
        self.ledger = ledger
        self.concurrency = concurrency or ConcurrencyLimiter(LocalInFlight(), 0)
        self.renew_every = renew_every
        self.settle_backoff = tuple(settle_backoff)
        self._live: dict[int, Ticket] = {}
        """Tickets of running generations whose holds or leases expire unless extended."""
        self._renewer: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    async def admit(self, request: Operation, context: RequestContext,
                    candidates: Sequence[Deployment]) -> Ticket:
        """Reserve tokens and the maximum cost, take an in-flight place; 429 if any is over.

        ``candidates`` are every deployment the router may fail over to: the
        reservations cover the largest context and the highest price among them.
        """
        ticket = Ticket(started=time.perf_counter(), request=request)
        key = context.key if isinstance(context.key, ApiKey) else None
        if key is None:
            return ticket
        try:
            if key.tpm:
                ticket.tokens = await self.limiter.hold_tokens(key, self._tokens(request, ticket, key.tpm, candidates),
                                                               context.headers)
            if key.budget_usd is not None:
                card = max((dep.card for dep in candidates),
                           key=lambda c: max_cost(request, c.context_length, self.prices.for_card(c)))
                amount = max_cost(request, card.context_length, self.prices.for_card(card))
                ticket.budget = await self.ledger.reserve(key, amount)
                log.debug("key %s reserved $%.6f for up to %d output tokens of %s", key.id, amount,
                          request.max_output_tokens(card.context_length), card.id)
            # Last: a request the limits above refuse never counts as in flight, even for a moment.
            ticket.lease = await self.concurrency.enter(key.id)
        except BaseException:
            await self._release(ticket)
            raise
        if ticket.budget is not None or (ticket.lease is not None and self.concurrency.expires):
            self._live[id(ticket)] = ticket
            if self._renewer is None or self._renewer.done():
                self._renewer = asyncio.get_running_loop().create_task(self._renew())
        return ticket

    @staticmethod
    def _tokens(request: Operation, ticket: Ticket, tpm: int, candidates: Sequence[Deployment]) -> int:
        """What a request reserves against ``tpm``: its prompt plus the most it may write.

        Without ``max_tokens`` that is the rest of the largest context window; capped at the
        limit itself (prompt permitting), so such a request may run, but alone in its minute.
        An operation that writes nothing (embeddings) reserves its input only.
        """
        prompt = ticket.estimated_input
        requested = request.requested_output_tokens()
        if requested:
            return prompt + requested
        context_length = max((dep.card.context_length for dep in candidates), default=0)
        if request.max_output_tokens(context_length) == 0:
            return prompt
        whole = max(context_length, prompt)  # the prompt plus the context left after it
        return max(min(whole, tpm), prompt)

    async def _release(self, ticket: Ticket) -> None:
        """Undo what ``admit`` took before it refused (nothing was used)."""
        if ticket.budget is not None:
            await self.ledger.settle(ticket.budget, 0.0)
        if ticket.tokens is not None:
            await self.limiter.settle_tokens(ticket.tokens, 0)

    async def _renew(self) -> None:
        """Extend the holds and leases of running generations, until none is left."""
        while self._live:
            await asyncio.sleep(self.renew_every)
            tickets = list(self._live.values())
            try:
                holds = [t.budget for t in tickets if t.budget is not None]
                if holds:
                    await self.ledger.extend(holds)
                if self.concurrency.expires:
                    await self.concurrency.renew([t.lease for t in tickets if t.lease is not None])
            except Exception:
                log.exception("could not extend the reservations of %d running generation(s)", len(tickets))

    def _usage(self, stats: GenerationStats, ticket: Ticket) -> Usage:
        usage = stats.usage
        interrupted = stats.status == "cancelled" or (stats.status == "failed" and stats.streamed_deltas > 0)
        if interrupted and not usage.input_tokens:
            # An interrupted stream never gets the engine's final counts: its prompt was
            # still processed, and what it streamed was generated (one delta ~ one token).
            usage = Usage(input_tokens=ticket.estimated_input, output_tokens=usage.output_tokens)
        return usage

    def finish(self, context: RequestContext, deployment: Deployment, stats: GenerationStats,
               token: Any) -> Awaitable[None] | None:
        """Record the usage row now; settling reservations (if any) is returned to be awaited.

        Never raises into the request path.
        """
        ticket = token if isinstance(token, Ticket) else Ticket(stats.started)
        usage = self._usage(stats, ticket)
        cost = self.prices.for_card(deployment.card).cost(usage.input_tokens, usage.cached_tokens,
                                                          usage.output_tokens)
        finished = stats.finished if stats.finished is not None else time.perf_counter()
        record = UsageRecord(
            key_id=context.key_id, model=deployment.card.id, deployment=deployment.backend.name,
            endpoint=context.endpoint, status=stats.status, input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens, output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            ttft_ms=None if stats.first_token is None else round((stats.first_token - ticket.started) * 1000, 3),
            latency_ms=round((finished - ticket.started) * 1000, 3), cost_usd=cost,
            draft_tokens=usage.draft_tokens, draft_accepted_tokens=usage.draft_accepted_tokens,
        )
        try:
            self.usage.queue(record)
        except Exception:
            log.exception("could not record usage of a %s request (key %s)", deployment.card.id, _label(context))
        self._live.pop(id(ticket), None)
        if ticket.budget is None and ticket.tokens is None and ticket.lease is None:
            return None
        return self._settle(context, ticket, cost, usage.input_tokens + usage.output_tokens)

    async def _settle(self, context: RequestContext, ticket: Ticket, cost: float, tokens: int) -> None:
        """Give back the lease, settle the budget and the tokens; what fails is retried in the background."""
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if ticket.lease is not None:
            steps.append(("in-flight lease", partial(self.concurrency.leave, ticket.lease)))
        if ticket.budget is not None:
            steps.append((f"budget reservation (${ticket.budget.amount:.6f}, cost ${cost:.6f})",
                          partial(self.ledger.settle, ticket.budget, cost)))
        if ticket.tokens is not None:
            steps.append((f"token reservation ({ticket.tokens.amount} tokens, used {tokens})",
                          partial(self.limiter.settle_tokens, ticket.tokens, tokens)))
        for what, step in steps:
            try:
                await step()
            except Exception as exc:
                log.warning("could not settle the %s of key %s (%s); retrying", what, _label(context),
                            type(exc).__name__)
                task = asyncio.get_running_loop().create_task(self._retry(_label(context), what, step))
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)

    async def _retry(self, who: str, what: str, step: Callable[[], Awaitable[None]]) -> None:
        error: Exception | None = None
        for delay in self.settle_backoff:
            await asyncio.sleep(delay)
            try:
                await step()
                log.info("settled the %s of key %s on a retry", what, who)
                return
            except Exception as exc:
                error = exc
        log.error("GAVE UP settling the %s of key %s after %d retries (%s): it stays reserved until it expires",
                  what, who, len(self.settle_backoff), type(error).__name__)

    async def aclose(self) -> None:
        """Stop extending; give pending settle retries one last chance to finish (a few seconds)."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        if self._retries:
            _, pending = await asyncio.wait(set(self._retries), timeout=3)
            for task in pending:
                task.cancel()
            if pending:
                log.error("shutting down with %d reservation(s) not settled: they stay reserved until they expire",
                          len(pending))


def _label(context: RequestContext) -> str:
    """How logs name the caller: a managed key's id, never anything derived from a secret."""
    return context.key.id if isinstance(context.key, ApiKey) else ("static key" if context.key_id else "anonymous")
