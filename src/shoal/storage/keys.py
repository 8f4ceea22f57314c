"""Repository of managed model access keys (the only SQL for them).

Only a key's SHA-256 hash is stored; the secret itself never reaches this module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select, update

from shoal.storage.db import Database
from shoal.storage.tables import ApiKeyRow


@dataclass(frozen=True)
class ApiKey:
    """A managed key as stored, without its hash: identity, scope and limits."""

    id: str
    name: str
    prefix: str
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: str | None = None
    created_at: float = 0.0
    revoked_at: float | None = None
    rotated_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether the key may still be used."""
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """The key as the admin API and ``shoal keys list`` show it (never the secret or its hash)."""
        return {
            "id": self.id, "object": "api_key", "name": self.name, "prefix": self.prefix,
            "status": "active" if self.active else "revoked",
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm, "tpm": self.tpm, "budget_usd": self.budget_usd, "budget_period": self.budget_period,
            "created_at": int(self.created_at),
            "revoked_at": int(self.revoked_at) if self.revoked_at is not None else None,
            "rotated_at": int(self.rotated_at) if self.rotated_at is not None else None,
        }


def _from_row(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id, name=row.name, prefix=row.prefix,
        models=tuple(row.models) if row.models is not None else None,
        rpm=row.rpm, tpm=row.tpm, budget_usd=row.budget_usd, budget_period=row.budget_period,
        created_at=row.created_at, revoked_at=row.revoked_at, rotated_at=row.rotated_at,
    )


class KeyStore:
    """Creates, finds, lists, revokes and re-keys managed keys."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, key: ApiKey, key_hash: str) -> ApiKey:
        """Insert ``key`` with the hash of its secret."""
        async with self.db.sessions.begin() as session:
            session.add(ApiKeyRow(
                id=key.id, name=key.name, prefix=key.prefix, key_hash=key_hash,
                models=list(key.models) if key.models is not None else None,
                rpm=key.rpm, tpm=key.tpm, budget_usd=key.budget_usd, budget_period=key.budget_period,
                created_at=key.created_at or time.time(),
            ))
        return await self.get(key.id) or key

    async def by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None:
        """The key whose secret hashes to ``key_hash``, with the stored hash (for a constant-time compare)."""
        async with self.db.sessions() as session:
            row = (await session.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))).scalar_one_or_none()
            return None if row is None else (_from_row(row), row.key_hash)

    async def get(self, key_id: str) -> ApiKey | None:
        """One key by id."""
        async with self.db.sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
            return None if row is None else _from_row(row)

    async def list(self, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        async with self.db.sessions() as session:
            return [_from_row(r) for r in (await session.execute(query)).scalars().all()]

    async def any(self) -> bool:
        """Whether any managed key was ever created (then /v1 needs a key, even if all are revoked)."""
        async with self.db.sessions() as session:
            return bool((await session.execute(select(exists().select_from(ApiKeyRow)))).scalar())

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke the key (idempotent); None if there is no such key."""
        async with self.db.sessions.begin() as session:
            await session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                                  .values(revoked_at=time.time()))
        return await self.get(key_id)

    async def replace_secret(self, key_id: str, prefix: str, key_hash: str) -> ApiKey | None:
        """Give an active key a new secret (the old one stops working); None if absent or revoked."""
        async with self.db.sessions.begin() as session:
            result = await session.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(prefix=prefix, key_hash=key_hash, rotated_at=time.time()))
            if not getattr(result, "rowcount", 0):
                return None
        return await self.get(key_id)
