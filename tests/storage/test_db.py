"""The database engine: no SQL parameters in errors, and a SQLite file only its owner can read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from shoal.storage.db import Database, default_url


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_failed_statement_does_not_show_its_parameters(database: Database) -> None:
    # A failing statement's message is what gets logged; its parameters are prompts and key hashes.
    with pytest.raises(DBAPIError) as info:
        async with database.engine.connect() as conn:
            await conn.execute(sa.text("SELECT :secret FROM no_such_table"), {"secret": "sk-very-private-prompt"})
    assert "sk-very-private-prompt" not in str(info.value)
    assert "hidden" in str(info.value)


async def test_a_new_sqlite_database_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "home" / "shoal"
    db = Database(default_url(data_dir))
    try:
        await db.prepare()
    finally:
        await db.aclose()
    assert mode(data_dir) == 0o700
    files = sorted(data_dir.iterdir())
    assert data_dir / "shoal.db" in files
    for path in files:  # the WAL and shared-memory files take the database file's mode
        assert mode(path) == 0o600, path


async def test_an_existing_sqlite_file_is_narrowed_but_its_directory_kept(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "shoal.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    db = Database(default_url(tmp_path))
    try:
        await db.prepare()
    finally:
        await db.aclose()
    assert mode(path) == 0o600
    assert mode(tmp_path) == 0o755  # a directory the user chose keeps its mode
