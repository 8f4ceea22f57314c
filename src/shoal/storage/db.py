"""The database: an async SQLAlchemy engine plus Alembic schema checks and upgrades."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger("shoal.storage")

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaError(Exception):
    """The database schema is older (or newer) than this version of Shoal expects."""


def default_url(data_dir: Path) -> str:
    """The SQLite file under the data directory."""
    return f"sqlite+aiosqlite:///{data_dir / 'shoal.db'}"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite:///`` URLs and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    return url


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at Shoal's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Database:
    """Owns the engine and the session factory; pooled for PostgreSQL.

    The engine never renders SQL parameters into its errors (``hide_parameters``): a failed
    statement's message is logged, and its parameters are prompts, answers and key hashes.
    A SQLite file is made readable by its owner only, in a directory created for the owner only.
    """

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        self.url = normalize_url(url)
        kwargs: dict[str, Any] = {"hide_parameters": True}
        if self.url.startswith("postgresql"):
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, pool_recycle=1800)
        else:
            kwargs.update(connect_args={"timeout": 30})
            private_sqlite_file(self.url)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if not self.url.startswith("postgresql"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the single-node SQLite default."""
        return self.url.startswith("sqlite")

    def _revisions(self, conn: Connection) -> tuple[str | None, str | None]:
        current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()
        return current, head

    async def revisions(self) -> tuple[str | None, str | None]:
        """(current, head) schema revisions."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(self._revisions)

    async def upgrade(self) -> str | None:
        """Migrate to the newest schema; returns the revision it is at."""

        def run(conn: Connection) -> None:
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(run)
        current, _ = await self.revisions()
        return current

    async def prepare(self) -> None:
        """Create a fresh database's schema; refuse an outdated one with a clear message."""
        current, head = await self.revisions()
        if current == head:
            return
        if current is None:
            log.info("creating the database schema (%s)", _safe_url(self.url))
            await self.upgrade()
            return
        raise SchemaError(
            f"The database schema is at revision {current}, but this Shoal needs {head}. "
            "Run `shoal db upgrade` (with the same --database-url) and start again."
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if missing; the directory itself for its owner only (0700).

    An existing directory keeps its mode: it may be one the user chose and shares on purpose.
    """
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def private_sqlite_file(url: str) -> None:
    """Create a SQLite database file 0600 (in a 0700 directory) before SQLite creates it 0644.

    SQLite gives its WAL and shared-memory files the database file's mode, so they stay
    private too. An existing file is narrowed to 0600: it holds key hashes and stored prompts.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer, and a commit costs an append, not a full fsync cycle.

    With ``synchronous=NORMAL`` a power cut can lose the last commits but never
    corrupts the file; an application crash loses nothing.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    return make_url(url).render_as_string(hide_password=True)
