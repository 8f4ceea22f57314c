"""The local PostgreSQL and Redis for tests, each test isolated (a fresh database, a unique key prefix).

Outside CI an unreachable service skips the test; in CI (``CI=true``) it fails
it, so the shared-state mode is never silently untested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from shoal.storage.db import Database

PG_URL = os.environ.get("SHOAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SHOAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_ci() -> bool:
    """Whether we run in CI, where every service must be there."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def require(url: str, what: str) -> None:
    """Skip (locally) or fail (in CI) unless the service at ``url`` answers."""
    if _reachable(url):
        return
    message = f"{what} is not reachable at {urlsplit(url).netloc}"
    if in_ci():
        pytest.fail(message + " (CI=true: the PostgreSQL + Redis tests must run)")
    pytest.skip(message)


def _run(coro_factory):  # type: ignore[no-untyped-def]
    """Run a coroutine on its own loop in a thread (callable from sync and async tests alike)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


def _pg_execute(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run(run)


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database (URL), dropped afterwards."""
    require(PG_URL, "PostgreSQL")
    name = "shoal_test_" + secrets.token_hex(6)
    # template0: copying template1 fails while any other session is connected to it.
    _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    parts = urlsplit(PG_URL)
    try:
        yield parts._replace(path="/" + name).geturl()
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A unique Redis key prefix; every key under it is deleted afterwards."""
    require(REDIS_URL, "Redis")
    import redis

    prefix = "shoal-test-" + secrets.token_hex(6)
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=prefix + ":*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    with fresh_postgres() as url:
        yield url


@pytest.fixture
def redis_test_prefix() -> Iterator[str]:
    """A Redis key prefix for one test, cleaned up afterwards."""
    with redis_prefix() as prefix:
        yield prefix


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator["Database"]:
    """A fresh SQLite database at the newest schema."""
    from shoal.storage.db import Database

    database = Database(f"sqlite:///{tmp_path / 'shoal.db'}")
    await database.prepare()
    try:
        yield database
    finally:
        await database.aclose()


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of a real service, which a test can cut and restore.

    Cut: the listening socket closes (new connections are refused) and every relayed
    connection is reset, so the client's driver sees real connection errors. Restore:
    it listens again on the same port. Runs on the test's event loop.
    """

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, service_url: str) -> str:
        """``service_url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(service_url)
        auth = parts.netloc.rpartition("@")[0]
        return parts._replace(netloc=f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}").geturl()

    async def start(self) -> "TcpProxy":
        """Listen (on a free port the first time, on the same port after a cut)."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def aclose(self) -> None:
        """Stop relaying."""
        await self.cut()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))
