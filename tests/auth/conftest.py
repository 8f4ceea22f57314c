"""Auth fixtures: a SQLite database for the key store; PostgreSQL / Redis helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.storage.db import Database
from tests.services import redis_test_prefix  # noqa: F401  (fixture)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh SQLite database at the newest schema."""
    database = Database(f"sqlite:///{tmp_path / 'shoal.db'}")
    await database.prepare()
    try:
        yield database
    finally:
        await database.aclose()
