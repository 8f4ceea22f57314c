"""Repository of usage records (the only SQL for them): insert, spend and summaries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import field, fields
from datetime import datetime, timezone
from operator import itemgetter
from random import getrandbits
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect

from shoal.core.records import record
from shoal.storage.db import Database
from shoal.storage.tables import UsageRow

log = logging.getLogger("shoal.usage")

GroupBy = Literal["key", "model", "day"]
FAILED = ("failed", "rejected")


def utc_day(ts: float) -> str:
    """The UTC calendar day of ``ts`` (``YYYY-MM-DD``)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


@record
class UsageRecord:
    """One metered generation."""

    key_id: str | None
    model: str
    deployment: str
    endpoint: str
    status: str
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    ttft_ms: float | None = None
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    draft_tokens: int = 0
    """Speculative decoding: tokens drafted (by a draft model or n-gram lookup) for this generation."""
    draft_accepted_tokens: int = 0
    """Speculative decoding: drafted tokens the model accepted."""
    ts: float = field(default_factory=time.time)
    uid: str = field(default_factory=lambda: f"{getrandbits(128):032x}")
    """Makes a retried insert idempotent. 128 random bits: no two rows will ever share one."""


class UsageStore:
    """Records usage and answers the questions budgets and reports ask.

    The request path uses :meth:`queue`: it returns at once, and every queued
    record is inserted in one transaction ``flush_seconds`` later (a commit per
    request would put a disk sync in every request's path). Every read here
    flushes first, so this process always reads its own writes; :meth:`aclose`
    flushes what is left. :meth:`add` inserts at once.

    A batch the database refuses goes back to the front of the queue and is
    retried with backoff (``retry_seconds`` doubling up to ``max_retry_seconds``)
    for as long as the server runs. Each row carries a random ``uid`` and the
    insert skips a ``uid`` already stored, so a retried batch whose first commit
    did land (the connection died before its acknowledgement) is not counted
    twice. The queue holds at most ``max_pending`` rows: when an outage fills it,
    the oldest rows are dropped (the newest belong to the budget period being
    enforced now), counted in :attr:`dropped` and logged at ERROR. On shutdown
    the rows still unwritten after ``close_seconds`` of retries are dropped the
    same way.
    """

    def __init__(self, db: Database, *, flush_seconds: float = 0.05, max_batch: int = 1000,
                 max_pending: int = 100_000, retry_seconds: float = 0.1, max_retry_seconds: float = 5.0,
                 close_seconds: float = 5.0) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.close_seconds = close_seconds
        self.dropped = 0
        """Rows dropped since start (queue full, or unwritable at shutdown); /metrics shows it."""
        self._unreported = 0
        self._pending: deque[UsageRecord] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._writing: asyncio.Lock | None = None
        self._closing_at: float | None = None
        self._insert: tuple[Dialect, str, tuple[str, ...]] | None = None

    @property
    def pending(self) -> int:
        """Rows queued and not yet written."""
        return len(self._pending)

    async def add(self, rec: UsageRecord) -> None:
        """Insert one record now (with any queued ones); if that fails, it stays queued and is retried."""
        self._pending.append(rec)
        try:
            await self.flush()
        except Exception:
            self._schedule()
            raise

    def queue(self, rec: UsageRecord) -> None:
        """Queue one record: inserted with the others within ``flush_seconds`` (needs a running loop)."""
        self._pending.append(rec)
        if len(self._pending) > self.max_pending:
            self._trim()
        if self._flusher is None or self._flusher.done():
            self._schedule()

    def _schedule(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    def _trim(self) -> None:
        """Drop the oldest rows beyond ``max_pending`` (reported by :meth:`_report_drops`)."""
        excess = len(self._pending) - self.max_pending
        for _ in range(excess):
            self._pending.popleft()
        self.dropped += excess
        self._unreported += excess

    def _report_drops(self, why: str = "the usage queue was full while the database failed") -> None:
        # One line per flush attempt, not one per row: an outage under load drops rows by the thousand.
        if self._unreported:
            log.error("DROPPED %d usage row(s): %s (%d dropped since start; queue limit %d rows)",
                      self._unreported, why, self.dropped, self.max_pending)
            self._unreported = 0

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_seconds)
        await self._drain()

    async def _drain(self) -> None:
        """Flush until the queue is empty, retrying with backoff; after ``close_seconds`` of closing, drop."""
        loop = asyncio.get_running_loop()
        delay = self.retry_seconds
        while self._pending:
            try:
                await self.flush()
            except Exception as exc:
                if self._closing_at is not None and loop.time() >= self._closing_at + self.close_seconds:
                    self.dropped += len(self._pending)
                    self._unreported += len(self._pending)
                    self._pending.clear()
                    self._report_drops(f"the database still failed at shutdown ({type(exc).__name__}: {exc})")
                    return
                self._report_drops()
                log.warning("could not write %d usage row(s) (%s: %s); retrying in %.1f s",
                            len(self._pending), type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_seconds)
        self._report_drops()

    async def flush(self) -> None:
        """Insert every queued record now; a batch that fails is queued again (at the front) and the error raised."""
        if self._writing is None:
            self._writing = asyncio.Lock()
        async with self._writing:
            while self._pending:
                pending = self._pending
                batch = [pending.popleft() for _ in range(min(self.max_batch, len(pending)))]
                try:
                    await self._write(batch)
                except BaseException:
                    # Cancelled too: the rows were not written (or, if the commit landed unseen, their
                    # uids make the retry a no-op).
                    pending.extendleft(reversed(batch))
                    if len(pending) > self.max_pending:
                        self._trim()
                    raise

    async def _write(self, batch: list[UsageRecord]) -> None:
        # A batch per 50 ms is on every request's bill: the INSERT is compiled once, and the rows
        # go to the driver as plain tuples (SQLAlchemy's per-row parameter processing cost more
        # than the database's own work; the values are plain numbers and strings).
        async with self.db.engine.begin() as conn:
            sql, columns = self._insert_for(conn.dialect)
            row_of = itemgetter(*columns)
            days: dict[int, str] = {}
            rows = []
            for r in batch:
                epoch_day = int(r.ts // 86400)
                day = days.get(epoch_day)
                if day is None:
                    day = days[epoch_day] = utc_day(r.ts)
                rows.append(row_of({**vars(r), "day": day}))
            await conn.exec_driver_sql(sql, rows)

    def _insert_for(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The positional ``INSERT`` of a usage row in ``dialect``'s SQL, and its columns in order.

        A row whose ``uid`` is already stored is skipped (``ON CONFLICT DO NOTHING``), which makes
        retrying a batch safe.
        """
        if self._insert is None or self._insert[0] is not dialect:
            names = [f.name for f in fields(UsageRecord)] + ["day"]
            dialect_insert = pg_insert if dialect.name == "postgresql" else sqlite_insert
            statement = dialect_insert(UsageRow).on_conflict_do_nothing(index_elements=[UsageRow.uid])
            compiled = statement.inline().compile(dialect=dialect, column_keys=names)
            order = compiled.positiontup
            if order is None:
                raise RuntimeError(f"the {dialect.name} driver's parameters are not positional")
            self._insert = (dialect, str(compiled), tuple(order))
        return self._insert[1], self._insert[2]

    async def aclose(self) -> None:
        """Write what is still queued, retrying for up to ``close_seconds``; then drop it (logged, counted)."""
        self._closing_at = asyncio.get_running_loop().time()
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            # Waited for, not cancelled: a flush cancelled mid-write leaves its connection inside a
            # transaction that holds SQLite's write lock, and the final flush below then fails.
            # It gives up by itself ``close_seconds`` after now.
            await asyncio.gather(flusher, return_exceptions=True)
        await self._drain()

    async def spend(self, key_id: str, since: float) -> float:
        """USD the key spent since ``since`` (epoch seconds)."""
        await self.flush()
        query = select(func.coalesce(func.sum(UsageRow.cost_usd), 0.0)).where(
            UsageRow.key_id == key_id, UsageRow.ts >= since)
        async with self.db.sessions() as session:
            return float((await session.execute(query)).scalar() or 0.0)

    async def records(self, key_id: str | None = None, since: float | None = None,
                      limit: int = 1000) -> list[UsageRecord]:
        """The newest records (optionally of one key), newest first."""
        await self.flush()
        query = select(UsageRow).order_by(UsageRow.ts.desc(), UsageRow.id.desc()).limit(limit)
        if key_id is not None:
            query = query.where(UsageRow.key_id == key_id)
        if since is not None:
            query = query.where(UsageRow.ts >= since)
        async with self.db.sessions() as session:
            rows = (await session.execute(query)).scalars().all()
        return [UsageRecord(
            key_id=r.key_id, model=r.model, deployment=r.deployment, endpoint=r.endpoint, status=r.status,
            input_tokens=r.input_tokens, cached_tokens=r.cached_tokens, output_tokens=r.output_tokens,
            reasoning_tokens=r.reasoning_tokens, ttft_ms=r.ttft_ms, latency_ms=r.latency_ms, cost_usd=r.cost_usd,
            draft_tokens=r.draft_tokens or 0, draft_accepted_tokens=r.draft_accepted_tokens or 0,
            ts=r.ts, **({"uid": r.uid} if r.uid is not None else {})) for r in rows]

    async def summary(self, by: GroupBy, since: float | None = None, until: float | None = None,
                      key_id: str | None = None) -> list[dict[str, Any]]:
        """Totals grouped by key, model or UTC day, ordered by the group."""
        await self.flush()
        column = {"key": UsageRow.key_id, "model": UsageRow.model, "day": UsageRow.day}[by]
        query = select(
            column.label("group"),
            func.count().label("requests"),
            func.sum(case((UsageRow.status.in_(FAILED), 1), else_=0)).label("failed"),
            func.sum(UsageRow.input_tokens).label("input_tokens"),
            func.sum(UsageRow.cached_tokens).label("cached_tokens"),
            func.sum(UsageRow.output_tokens).label("output_tokens"),
            func.sum(UsageRow.reasoning_tokens).label("reasoning_tokens"),
            func.sum(UsageRow.cost_usd).label("cost_usd"),
            func.avg(UsageRow.ttft_ms).label("avg_ttft_ms"),
            func.avg(UsageRow.latency_ms).label("avg_latency_ms"),
        ).group_by(column).order_by(column)
        if since is not None:
            query = query.where(UsageRow.ts >= since)
        if until is not None:
            query = query.where(UsageRow.ts < until)
        if key_id is not None:
            query = query.where(UsageRow.key_id == key_id)
        async with self.db.sessions() as session:
            rows = (await session.execute(query)).mappings().all()
        out = []
        for row in rows:
            item = {"group": row["group"], "requests": int(row["requests"]), "failed": int(row["failed"] or 0)}
            for name in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"):
                item[name] = int(row[name] or 0)
            item["cost_usd"] = round(float(row["cost_usd"] or 0.0), 9)
            for name in ("avg_ttft_ms", "avg_latency_ms"):
                item[name] = None if row[name] is None else round(float(row[name]), 1)
            out.append(item)
        return out
