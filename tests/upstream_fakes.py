"""A small scripted OpenAI-style upstream on 127.0.0.1 (aiohttp), for failover and translation tests.

Each request pops the next behaviour: ``ok`` (a short streamed answer), ``500``,
``429`` (with ``retry-after``), ``hang`` (never answers), ``drop`` (streams one
chunk then cuts the connection), ``stall`` (streams one chunk, then nothing while
the connection stays open), ``("late", seconds, answer)`` (a whole answer after a
wait), or raw recorded SSE bytes to replay.

:class:`UpstreamProcess` runs one in a process of its own (``python -m tests.upstream_fakes``),
for tests that start and kill upstreams while Shoal serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    """One ``data:`` line of a chat chunk."""
    body: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body["choices"] = []
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


OK_STREAM = (chunk({"role": "assistant", "content": ""}) + chunk({"content": "Hello"}) + chunk({"content": "!"})
             + chunk({}, "stop") + chunk({}, usage={"prompt_tokens": 7, "completion_tokens": 2,
                                                    "prompt_tokens_details": {"cached_tokens": 4}})
             + b"data: [DONE]\n\n")


class FakeUpstream:
    """An aiohttp app that serves scripted behaviours; records every request body."""

    def __init__(self, *behaviours: Any, default: Any = "ok", port: int = 0, piece_delay: float = 0.01) -> None:
        self.script: deque[Any] = deque(behaviours)
        self.default = default
        self.piece_delay = piece_delay
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = port
        self._stop = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> "FakeUpstream":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.runner is not None
        self._stop.set()
        await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        self.headers.append(dict(request.headers))
        if request.method == "GET":
            return web.json_response({"object": "list", "data": []})
        self.bodies.append(await request.json())
        what = self.script.popleft() if self.script else self.default
        if what == "500":
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        if what == "429":
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"retry-after": "1"})
        if what == "400":
            return web.json_response({"error": {"message": "bad temperature", "type": "invalid_request_error"}},
                                     status=400)
        if isinstance(what, dict):  # a whole (non-streamed) answer
            return web.json_response(what)
        if isinstance(what, tuple) and what[0] == "late":
            await asyncio.sleep(what[1])
            return web.json_response(what[2])
        if isinstance(what, tuple) and what[0] == "raw-json":  # a body that claims to be JSON
            return web.Response(body=what[1], content_type="application/json")
        if what == "hang":
            try:
                await asyncio.wait_for(self._stop.wait(), 10)
            except asyncio.TimeoutError:
                pass
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if what == "stall":
            await response.write(chunk({"role": "assistant", "content": "Hel"}))
            try:
                await asyncio.wait_for(self._stop.wait(), 10)
            except asyncio.TimeoutError:
                pass
            return response
        if what == "drop":
            await response.write(chunk({"role": "assistant", "content": "Hel"}))
            await asyncio.sleep(0.2)  # the client has the first chunk before the connection goes
            assert request.transport is not None
            request.transport.close()
            return response
        if isinstance(what, list):  # pieces sent one by one, so the client reads them apart
            for piece in what:
                await response.write(piece)
                await asyncio.sleep(self.piece_delay)
        else:
            await response.write(OK_STREAM if what == "ok" else what)
        await response.write_eof()
        return response


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slow_stream(pieces: int = 10) -> list[bytes]:
    """A streamed answer sent in ``pieces`` + 4 writes (so it stays in flight a while)."""
    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": "tok "}) for _ in range(pieces)),
            chunk({}, "stop"), chunk({}, usage={"prompt_tokens": 7, "completion_tokens": pieces}),
            b"data: [DONE]\n\n"]


class UpstreamProcess:
    """A :class:`FakeUpstream` in a process of its own on 127.0.0.1 (to start and kill during a test).

    It answers every POST with :func:`slow_stream`, each piece ``piece_delay`` seconds apart, and
    exits by itself after ``lifetime`` seconds at the latest.
    """

    def __init__(self, piece_delay: float = 0.03, lifetime: float = 300.0) -> None:
        self.port = closed_port()
        self.args = ["--port", str(self.port), "--piece-delay", str(piece_delay), "--lifetime", str(lifetime)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 15.0) -> "UpstreamProcess":
        """Start it and wait (bounded) until it answers ``GET /v1/models``."""
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.upstream_fakes", *self.args], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"upstream process exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"upstream process on {self.port} was not ready within {timeout} s")

    def stop(self) -> None:
        """Kill it by its PID (no goodbye: its connections just break) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def _serve(port: int, piece_delay: float, lifetime: float) -> None:
    async with FakeUpstream(default=slow_stream(), port=port, piece_delay=piece_delay):
        await asyncio.sleep(lifetime)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A scripted OpenAI-style upstream on 127.0.0.1 (tests only).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--piece-delay", type=float, default=0.03)
    parser.add_argument("--lifetime", type=float, default=300.0)
    opts = parser.parse_args()
    asyncio.run(_serve(opts.port, opts.piece_delay, opts.lifetime))
