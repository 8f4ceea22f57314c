"""Repository of stored responses (the only SQL for them)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update

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


def _from_row(row: ResponseRow) -> StoredResponse:
    return StoredResponse(
        id=row.id, owner=row.owner, status=row.status, model=row.model, body=row.body,
        input_items=row.input_items, conversation=row.conversation,
        previous_response_id=row.previous_response_id, background=bool(row.background), created_at=row.created_at,
    )


class ResponseStore:
    """Stores, fetches and deletes responses; every query is scoped to the owner."""

    def __init__(self, db: Database, instance: str) -> None:
        self.db = db
        self.instance = instance

    async def save(self, rec: StoredResponse) -> None:
        """Insert or replace ``rec``."""
        now = time.time()
        async with self.db.sessions.begin() as session:
            await session.merge(ResponseRow(
                id=rec.id, owner=rec.owner, created_at=rec.created_at, updated_at=now, status=rec.status,
                model=rec.model, previous_response_id=rec.previous_response_id, background=int(rec.background),
                body=rec.body, input_items=rec.input_items, conversation=rec.conversation, instance=self.instance,
            ))

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
            return bool(result.rowcount)

    async def fail_orphans(self) -> int:
        """Mark this instance's unfinished background responses failed (after a restart)."""
        async with self.db.sessions.begin() as session:
            rows = (await session.execute(select(ResponseRow).where(
                ResponseRow.status.in_(ACTIVE), ResponseRow.instance == self.instance))).scalars().all()
            for row in rows:
                body = dict(row.body)
                body["status"] = "failed"
                body["error"] = {"code": "server_error",
                                 "message": "The server restarted before this background response finished."}
                row.body = body
                row.status = "failed"
                row.updated_at = time.time()
            return len(rows)

    async def set_status(self, response_id: str, status: str) -> None:
        """Change only the status column (the body follows on the next save)."""
        async with self.db.sessions.begin() as session:
            await session.execute(update(ResponseRow).where(ResponseRow.id == response_id)
                                  .values(status=status, updated_at=time.time()))
