"""Storage fixtures: a prepared database, SQLite or a fresh PostgreSQL one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.storage.db import Database
from tests.services import fresh_postgres, postgres_url, redis_test_prefix  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database at the newest schema, for each supported engine."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'shoal.db'}")
        await db.prepare()
        try:
            yield db
        finally:
            await db.aclose()
        return
    with fresh_postgres() as url:
        db = Database(url)
        await db.prepare()
        try:
            yield db
        finally:
            await db.aclose()
