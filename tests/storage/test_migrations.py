"""Migrations: 0002 adds keys and usage; a database left at 0001 is refused until ``shoal db upgrade``."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from shoal.cli import main
from shoal.storage.db import Database, SchemaError, alembic_config


async def at_revision(url: str, revision: str) -> None:
    """Migrate an empty database to ``revision`` only."""
    db = Database(url)

    def run(conn: Connection) -> None:
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await db.aclose()


async def tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_old_schema_is_refused_then_upgraded(engine: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'shoal.db'}" if engine == "sqlite" else request.getfixturevalue("postgres_url")
    await at_revision(url, "0001")
    db = Database(url)
    try:
        assert await db.revisions() == ("0001", "0004")
        with pytest.raises(SchemaError, match="shoal db upgrade"):
            await db.prepare()
        assert await db.upgrade() == "0004"
        await db.prepare()
        assert {"responses", "api_keys", "usage"} <= await tables(db)
    finally:
        await db.aclose()


def test_db_upgrade_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path / 'shoal.db'}"
    asyncio.run(at_revision(url, "0001"))
    assert main(["db", "status", "--database-url", url]) == 0
    assert "needs `shoal db upgrade`" in capsys.readouterr().out
    assert main(["keys", "list", "--database-url", url]) == 1
    assert "shoal db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert "revision 0004 (was 0001" in capsys.readouterr().out
    assert main(["keys", "list", "--database-url", url]) == 0


async def test_the_migrated_schema_matches_the_tables(database: Database) -> None:
    """0004's draft counts, 0003's leases and usage uids (and everything before) are what tables.py declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from shoal.storage.tables import Base

    def diff(conn: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)

    async with database.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
