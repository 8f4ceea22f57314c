"""The system under test: a fresh PostgreSQL database and a Redis prefix behind cuttable proxies,
the fault-injecting upstream, and a real ``shoal serve`` process (that can be killed with SIGKILL).

Every address is 127.0.0.1; the real PostgreSQL and Redis are never stopped (only
the proxies in front of them are cut). Everything started here is stopped by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.reliability.loop import LoopThread
from benchmarks.reliability.proxy import TcpProxy
from benchmarks.reliability.upstream import MODEL, FaultUpstream

PG_URL = os.environ.get("SHOAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SHOAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODELS = ("upstream-500", "upstream-429", "upstream-hang", "upstream-reset", "upstream-drop", "upstream-truncate",
          "kill-9", "database-down", "database-stall", "redis-down", "budget", "smoke")
"""One catalog model per use, each with its own deployment: a circuit breaker one fault case opened
(it stays open 30 s) must not turn the next case's requests into 503s."""
PRICES = {"input": 10.0, "output": 30.0}
"""USD per million tokens: high, so that a budget of cents is used up by a few requests."""
ADMIN_TOKEN = "reliability-admin-" + "x" * 16
LEASE_SECONDS = 8.0
"""Background-response lease, where this Shoal has one: a crashed server's responses are failed within
about 11 s (lease + a third), inside the matrix's 15 s deadline, and an outage of 5 s does not expire it."""
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Timeouts:
    """The deployment's upstream timeouts (seconds): short, so a hang is noticed within the run."""

    connect: float = 2.0
    first_byte: float = 2.0
    read: float = 5.0
    total: float = 5.0


def model_id(use: str) -> str:
    """The catalog model a fault case (or the budget run) sends its requests to."""
    return f"m-{use}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ShoalProcess:
    """``shoal serve --config`` as a subprocess of this interpreter (so it runs this checkout's code)."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str], port: int | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.env = env
        self.port = port or free_port()
        self.log = workdir / "shoal.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The root URL (no ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's PID."""
        assert self.popen is not None
        return self.popen.pid

    def start(self, timeout: float = START_TIMEOUT_S) -> "ShoalProcess":
        """Start and wait until ``/health`` answers 200 (the log is appended to across restarts)."""
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "shoal.cli", "serve", "--config", str(self.config), "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"shoal serve exited with {self.popen.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"shoal serve was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        """Whether ``/health`` answers 200 now."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook runs (what a crash or the OOM killer does)."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after 10 s."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class Stack:
    """Fresh database + Redis prefix behind proxies, the fault upstream, and ``shoal serve`` in front of them."""

    def __init__(self, workdir: Path, *, timeouts: Timeouts = Timeouts(), gap: float = 0.02,
                 redis: bool = True, pg_url: str = PG_URL, redis_url: str = REDIS_URL) -> None:
        self.workdir = workdir
        self.timeouts = timeouts
        self.gap = gap
        self.use_redis = redis
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.loop = LoopThread()
        self.db_name = "shoal_reliability_" + secrets.token_hex(5)
        self.redis_prefix = "shoal-reliability-" + secrets.token_hex(5)
        self.upstream = FaultUpstream(gap=gap)
        self.pg = TcpProxy(*_host_port(pg_url, 5432))
        self.redis = TcpProxy(*_host_port(redis_url, 6379))
        self.shoal: ShoalProcess | None = None
        self._db_created = False

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> "Stack":
        """Create the database, start the upstream and the proxies, then ``shoal serve``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.loop.run(self._admin_sql(f'CREATE DATABASE "{self.db_name}" TEMPLATE template0'))
        self._db_created = True
        self.loop.run(self.upstream.start())
        self.loop.run(self.pg.start())
        if self.use_redis:
            self.loop.run(self.redis.start())
        config = self.workdir / "shoal.yaml"
        config.write_text(self.config_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        env |= {"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN, "SHOAL_HOME": str(self.workdir / "home"),
                "SHOAL_DATABASE_URL": self.shoal_db_url, "PYTHONUNBUFFERED": "1"}
        if self.use_redis:
            env |= {"SHOAL_REDIS_URL": f"redis://127.0.0.1:{self.redis.port}{urlsplit(self.redis_url).path or '/0'}",
                    "SHOAL_REDIS_PREFIX": self.redis_prefix}
        self.shoal = ShoalProcess(config, self.workdir, env).start()
        return self

    def config_text(self) -> str:
        """The catalog: per use a model ``m-<use>`` with one ``type: openai`` deployment on the fault upstream."""
        t = self.timeouts
        lines = [f"response_lease_seconds: {LEASE_SECONDS}"] if _has_setting("response_lease_seconds") else []
        lines.append("models:")
        for use in MODELS:
            lines += [f"  - id: {model_id(use)}", "    context_length: 8192",
                      f"    pricing: {{input: {PRICES['input']}, output: {PRICES['output']}}}",
                      "    deployments:", "      - type: openai", f"        base_url: {self.upstream.url}",
                      f"        model: {MODEL}",
                      f"        timeouts: {{connect: {t.connect}, first_byte: {t.first_byte}, read: {t.read}, "
                      f"total: {t.total}}}"]
        return "\n".join(lines) + "\n"

    @property
    def shoal_db_url(self) -> str:
        """The database URL Shoal uses: through the PostgreSQL proxy."""
        parts = urlsplit(self.pg_url)
        user = f"{parts.username}@" if parts.username else ""
        return f"postgresql://{user}127.0.0.1:{self.pg.port}/{self.db_name}"

    @property
    def direct_db_url(self) -> str:
        """The same database without the proxy (for the harness's own checks)."""
        return urlsplit(self.pg_url)._replace(path="/" + self.db_name).geturl()

    def restart_shoal(self) -> None:
        """Start ``shoal serve`` again on the same port, config and data directory."""
        assert self.shoal is not None
        self.shoal.start()

    def close(self) -> None:
        """Stop everything this stack started; drop its database and its Redis keys."""
        try:
            if self.shoal is not None:
                self.shoal.stop()
            self.loop.run(self.upstream.stop())
            self.loop.run(self.pg.stop())
            self.loop.run(self.redis.stop())
            if self._db_created:
                self.loop.run(self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            if self.use_redis:
                self.loop.run(self._drop_redis_keys())
        finally:
            self.loop.close()

    # -- the services, straight (not through the proxies) -----------------------
    async def _admin_sql(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.pg_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def _query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(self.direct_db_url, timeout=10)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of ``sql`` on the run's database, read directly (never through the proxy)."""
        return self.loop.run(self._query(sql, *args))

    async def _drop_redis_keys(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=self.redis_prefix + ":*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    # -- the admin API ----------------------------------------------------------
    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call ``/admin/...`` with the admin token."""
        assert self.shoal is not None
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.shoal.url}{path}", data=data, method=method,
                                     headers={"content-type": "application/json",
                                              "authorization": f"Bearer {ADMIN_TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def create_key(self, name: str, **limits: Any) -> tuple[str, str]:
        """A managed key (id, secret) made through the admin API."""
        status, key = self.admin("POST", "/admin/keys", {"name": name, **limits})
        if status != 201:
            raise RuntimeError(f"could not create key {name}: {status} {key}")
        return key["id"], key["key"]


def _has_setting(name: str) -> bool:
    """Whether this checkout's ``shoal serve`` knows the setting (the suite runs on older code too)."""
    from dataclasses import fields

    from shoal.config import Settings

    return name in {f.name for f in fields(Settings)}


def _host_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default
