"""The speculating llama.cpp server of a local deployment, in a process of its own.

Why a process: llama.cpp's CPU backend (as xllamacpp builds it) runs each graph on an
OpenMP team, and libgomp cuts its spin-wait to about a hundred spins once a process
holds more OpenMP threads than CPUs. Two 2-thread llama.cpp servers in one process on 2
cores cross that line, and every token then pays for its workers going to sleep and
being woken: measured, the speculating server decoded 16-20 tokens/s beside a plain
server in the same process against 24-28 alone (the plain one the same; see
docs/benchmarks/speculative/). In its own process each server keeps its workers spinning.

The child is this module run as ``python -m shoal.backends.local.twin``. It reads its
settings (one JSON line, the loopback key included, so the key never shows in ``ps``) from
stdin, starts llama.cpp's server, prints ``{"address": ...}``, and exits when its stdin
closes: when the engine closes it, or when Shoal dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from shoal.backends.local.params import chat_server_params
from shoal.backends.local.speculative import SpeculativeConfig, apply_speculative
from shoal.backends.timeouts import Timeouts
from shoal.backends.upstream import UpstreamConfig, UpstreamHTTP
from shoal.core.backend import BackendFailure

START_TIMEOUT = 600.0
"""Seconds the child may take to load its model (a cold page cache on a slow disk)."""

# A local prefill of a long prompt on a few cores takes a while before the first byte.
TWIN_TIMEOUTS = Timeouts(connect=5.0, first_byte=600.0, read=600.0, total=600.0)


@dataclass(frozen=True)
class TwinSettings:
    """What the child needs to start its server (sent as JSON on its stdin)."""

    path: str
    model_id: str
    slots: int
    ctx_per_slot: int
    threads: int | None
    api_key: str
    verbose: bool
    speculative: dict[str, Any]

    def params(self) -> Any:
        """The child's ``xllamacpp.CommonParams``: the plain server's, with speculation on."""
        params = chat_server_params(Path(self.path), self.model_id, slots=self.slots, ctx_per_slot=self.ctx_per_slot,
                                    threads=self.threads, api_key=self.api_key, verbose=self.verbose)
        spec = dict(self.speculative)
        if spec.get("draft_path"):
            spec["draft_path"] = Path(spec["draft_path"])
        apply_speculative(params, SpeculativeConfig(**spec), params.cpuparams.n_threads)
        return params


def settings_for(config: SpeculativeConfig, *, path: Path, model_id: str, ctx_per_slot: int,
                 threads: int | None, api_key: str, verbose: bool) -> TwinSettings:
    """The child's settings for a deployment speculating as ``config``."""
    spec = asdict(config)
    spec["draft_path"] = str(config.draft_path) if config.draft_path else None
    return TwinSettings(path=str(path), model_id=model_id, slots=config.max_streams, ctx_per_slot=ctx_per_slot,
                        threads=threads, api_key=api_key, verbose=verbose, speculative=spec)


class SpeculatingTwin:
    """The child process and the HTTP client of its llama.cpp server."""

    def __init__(self, settings: TwinSettings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self._http: UpstreamHTTP | None = None

    def start(self) -> None:
        """Launch the child; :meth:`wait_ready` collects its address (load both servers at once meanwhile)."""
        self.proc = subprocess.Popen([sys.executable, "-m", "shoal.backends.local.twin"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(asdict(self.settings)) + "\n")
        self.proc.stdin.flush()

    def wait_ready(self) -> None:
        """Block until the child serves (raises ``RuntimeError`` if it died or took too long)."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        # The child prints one line, its address, or nothing if it dies first.
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise RuntimeError(f"the speculating llama.cpp server of {self.settings.model_id} did not start "
                               f"(exit code {proc.poll()}); see the log above")
        self.address = json.loads(line)["address"]
        # A fresh loopback connection per request: llama.cpp's HTTP server drops idle keep-alive
        # connections, and a request written into one it just dropped fails (seen in the tests).
        config = UpstreamConfig(base_url=self.address, model=self.settings.model_id, timeouts=TWIN_TIMEOUTS,
                                max_connections=max(4, self.settings.slots * 2), headers={"Connection": "close"})
        self._http = UpstreamHTTP(config, who="the speculating llama.cpp server",
                                  auth_headers={"Authorization": f"Bearer {self.settings.api_key}"})

    @property
    def alive(self) -> bool:
        """Whether the child is serving."""
        return self._http is not None and self.proc is not None and self.proc.poll() is None

    async def chunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """llama.cpp's streamed chat chunks for ``body``, as the in-process server's callback gets them.

        Leaving early closes the connection, which llama.cpp notices at its next token (the slot is freed).
        """
        http = self._http
        if http is None:
            raise BackendFailure("The speculating llama.cpp server is not running.", retryable=True)
        async with http.post("/v1/chat/completions", body) as response:
            async for _, data in http.sse(response):
                if data == "[DONE]":
                    return
                yield orjson.loads(data)

    async def aclose(self) -> None:
        """Close the client's connections and the child (waiting for it off the event loop)."""
        if self._http is not None:
            await self._http.aclose()
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """End the child (its stdin closes; killed if it lingers)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        assert proc.stdin is not None
        try:
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=10)


def _serve() -> None:
    """The child: start the server from stdin's settings, print its address, live until stdin closes."""
    import xllamacpp

    settings = TwinSettings(**json.loads(sys.stdin.readline()))
    # Only the address goes to the parent's pipe: whatever llama.cpp prints goes to stderr, with the log.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    server = xllamacpp.Server(settings.params())
    answer.write(json.dumps({"address": str(server.listening_address)}) + "\n")
    answer.close()
    sys.stdin.read()  # returns at EOF: the parent closed it or died
    del server


if __name__ == "__main__":
    _serve()
