"""Repository of stored responses (the only SQL for them)."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult, Result

from shoal.storage.db import Database
from shoal.storage.tables import ResponseRow

ACTIVE = ("queued", "in_progress")


@dataclass
class StoredResponse:
    """A response as stored: the object, its input items and the conversation so far."""

    id: str
    owner: str | None
    status: str
    model: str
    body: dict[str, Any]
    input_items: list[dict[str, Any]]
    conversation: list[dict[str, Any]]
    previous_response_id: str | None = None
    background: bool = False
    created_at: float = field(default_factory=time.time)


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed (``execute`` is typed as a plain Result; DML returns a CursorResult)."""
    return cast("CursorResult[Any]", result).rowcount


def _from_row(row: ResponseRow) -> StoredResponse:
    return StoredResponse(
        id=row.id, owner=row.owner, status=row.status, model=row.model, body=row.body,
        input_items=row.input_items, conversation=row.conversation,
        previous_response_id=row.previous_response_id, background=bool(row.background), created_at=row.created_at,
    )


ORPHANED = "The server running this background response stopped before it finished."


class ResponseStore:
    """Stores, fetches and deletes responses; every query is scoped to the owner.

    A background response is leased while it is queued or in progress: the process
    running it (``instance``) renews ``lease_until`` (see :meth:`renew`), and once the
    lease has run out any replica's :meth:`sweep` marks it failed. The running
    process's own writes are conditional on the row still being active
    (:meth:`update_if_active`), so a cancel, delete or sweep done elsewhere is never
    overwritten. Times are the writers' clocks: replicas' clocks must agree to well
    within ``lease_seconds``.
    """

    def __init__(self, db: Database, instance: str, lease_seconds: float = 15.0) -> None:
        self.db = db
        self.instance = instance
        self.lease_seconds = lease_seconds

    async def save(self, rec: StoredResponse) -> None:
        """Insert or replace ``rec`` (leased to this instance if it is queued or in progress)."""
        now = time.time()
        async with self.db.sessions.begin() as session:
            await session.merge(ResponseRow(
                id=rec.id, owner=rec.owner, created_at=rec.created_at, updated_at=now, status=rec.status,
                model=rec.model, previous_response_id=rec.previous_response_id, background=int(rec.background),
                body=rec.body, input_items=rec.input_items, conversation=rec.conversation, instance=self.instance,
                lease_until=now + self.lease_seconds if rec.status in ACTIVE else None,
            ))

    async def update_if_active(self, rec: StoredResponse) -> bool:
        """Write ``rec``'s state over the stored row only if that row is still queued or in progress.

        False when it is not: cancelled, failed by a sweep, or deleted (a delete is never undone).
        """
        now = time.time()
        async with self.db.sessions.begin() as session:
            result = await session.execute(
                update(ResponseRow).where(ResponseRow.id == rec.id, ResponseRow.status.in_(ACTIVE)).values(
                    status=rec.status, model=rec.model, body=rec.body, conversation=rec.conversation,
                    updated_at=now, lease_until=now + self.lease_seconds if rec.status in ACTIVE else None))
            return bool(_changed(result))

    async def get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        """The response, if it exists and belongs to ``owner``."""
        async with self.db.sessions() as session:
            row = await session.get(ResponseRow, response_id)
            if row is None or row.owner != owner:
                return None
            return _from_row(row)

    async def status(self, response_id: str) -> str | None:
        """Just the status (for cancellation checks across replicas)."""
        async with self.db.sessions() as session:
            result = await session.execute(select(ResponseRow.status).where(ResponseRow.id == response_id))
            return result.scalar_one_or_none()

    async def delete(self, response_id: str, owner: str | None) -> bool:
        """Delete the response; False if there was none for ``owner``."""
        async with self.db.sessions.begin() as session:
            result = await session.execute(
                delete(ResponseRow).where(ResponseRow.id == response_id, ResponseRow.owner == owner)
                if owner is not None else
                delete(ResponseRow).where(ResponseRow.id == response_id, ResponseRow.owner.is_(None)))
            return bool(_changed(result))

    async def set_status(self, response_id: str, status: str, *, was: tuple[str, ...] = ACTIVE) -> bool:
        """Change only the status column (the body follows on the next write), if it is one of ``was``."""
        async with self.db.sessions.begin() as session:
            result = await session.execute(
                update(ResponseRow).where(ResponseRow.id == response_id, ResponseRow.status.in_(was))
                .values(status=status, updated_at=time.time()))
            return bool(_changed(result))

    async def renew(self, response_ids: Collection[str]) -> set[str]:
        """Extend the leases of these (running here) responses; returns those still active, hence renewed.

        One missing from the result was cancelled, deleted or failed elsewhere: its run should stop.
        """
        if not response_ids:
            return set()
        ids = list(response_ids)
        async with self.db.sessions.begin() as session:
            await session.execute(
                update(ResponseRow).where(ResponseRow.id.in_(ids), ResponseRow.status.in_(ACTIVE))
                .values(lease_until=time.time() + self.lease_seconds))
            result = await session.execute(
                select(ResponseRow.id).where(ResponseRow.id.in_(ids), ResponseRow.status.in_(ACTIVE)))
            return set(result.scalars().all())

    async def sweep(self) -> list[str]:
        """Mark failed every active response whose lease ran out (its process stopped); returns their ids.

        Each row is failed by one ``UPDATE ... WHERE status IN (queued, in_progress) AND lease_until < now``,
        so a lease renewed meanwhile, or a row another replica swept or its runner finished, is left alone.
        """
        now = time.time()
        async with self.db.sessions() as session:
            expired = (await session.execute(
                select(ResponseRow.id, ResponseRow.body).where(
                    ResponseRow.status.in_(ACTIVE), ResponseRow.lease_until < now))).all()
        failed = []
        for response_id, body in expired:
            body = {**body, "status": "failed", "error": {"code": "server_error", "message": ORPHANED}}
            async with self.db.sessions.begin() as session:
                result = await session.execute(
                    update(ResponseRow).where(ResponseRow.id == response_id, ResponseRow.status.in_(ACTIVE),
                                              ResponseRow.lease_until < now)
                    .values(status="failed", body=body, updated_at=time.time(), lease_until=None))
            if _changed(result):
                failed.append(response_id)
        return failed
