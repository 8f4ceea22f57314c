"""The pipeline hooks of a multi-tenant Shoal: limits before a generation, metering after.

``admit`` reserves tokens-per-minute and the request's maximum cost (429 if
either does not fit) before anything is generated; ``finish`` runs once for
every admitted generation, however it ended, and records a usage row, settles
the token and budget reservations to the real counts, and releases them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from shoal.auth.ratelimit import RateLimiter, TokenHold
from shoal.core.context import RequestContext
from shoal.core.pipeline import Deployment, GenerationStats
from shoal.core.types import GenerationRequest, Usage
from shoal.storage.keys import ApiKey
from shoal.storage.usage import UsageRecord, UsageStore
from shoal.usage.budget import BudgetHold, Ledger
from shoal.usage.estimate import max_cost, max_output_tokens, typical_input_tokens
from shoal.usage.pricing import PriceTable

log = logging.getLogger("shoal.usage")


@dataclass
class Ticket:
    """What ``admit`` reserved for one generation, handed back to ``finish``."""

    started: float
    request: GenerationRequest | None = None
    tokens: TokenHold | None = None
    budget: BudgetHold | None = None

    @cached_property
    def estimated_input(self) -> int:
        """The prompt's likely size in tokens, worked out only when a limit or an interrupted stream needs it."""
        return typical_input_tokens(self.request) if self.request is not None else 0


class Meter:
    """Implements ``PipelineHooks``: rate limits and budgets in ``admit``, metering in ``finish``."""

    def __init__(self, usage: UsageStore, prices: PriceTable, limiter: RateLimiter, ledger: Ledger) -> None:
        self.usage = usage
        self.prices = prices
        self.limiter = limiter
        self.ledger = ledger

    async def admit(self, request: GenerationRequest, context: RequestContext, deployment: Deployment) -> Ticket:
        """Reserve tokens and the maximum cost; 429 (``rate_limit_exceeded`` / ``insufficient_quota``) if over."""
        card = deployment.card
        ticket = Ticket(started=time.perf_counter(), request=request)
        key = context.key if isinstance(context.key, ApiKey) else None
        if key is None:
            return ticket
        if key.tpm:
            output = request.sampling.max_tokens or 0
            ticket.tokens = await self.limiter.hold_tokens(key, ticket.estimated_input + output, context.headers)
        if key.budget_usd is not None:
            amount = max_cost(request, card.context_length, self.prices.for_card(card))
            try:
                ticket.budget = await self.ledger.reserve(key, amount)
            except BaseException:
                if ticket.tokens is not None:
                    await self.limiter.settle_tokens(ticket.tokens, 0)
                raise
            log.debug("key %s reserved $%.6f for up to %d output tokens", key.id, amount,
                      max_output_tokens(request, card.context_length))
        return ticket

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
        )
        try:
            self.usage.queue(record)
        except Exception:
            log.exception("could not record usage of a %s request (key %s)", deployment.card.id, _label(context))
        if ticket.budget is None and ticket.tokens is None:
            return None
        return self._settle(context, ticket, cost, usage.input_tokens + usage.output_tokens)

    async def _settle(self, context: RequestContext, ticket: Ticket, cost: float, tokens: int) -> None:
        try:
            if ticket.budget is not None:
                await self.ledger.settle(ticket.budget, cost)
            if ticket.tokens is not None:
                await self.limiter.settle_tokens(ticket.tokens, tokens)
        except Exception:
            log.exception("could not settle the reservations of key %s", _label(context))


def _label(context: RequestContext) -> str:
    """How logs name the caller: a managed key's id, never anything derived from a secret."""
    return context.key.id if isinstance(context.key, ApiKey) else ("static key" if context.key_id else "anonymous")
