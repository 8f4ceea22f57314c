"""A small scripted OpenAI-style upstream on 127.0.0.1 (aiohttp), for failover and translation tests.

Each request pops the next behaviour: ``ok`` (a short streamed answer), ``500``,
``429`` (with ``retry-after``), ``hang`` (never answers), ``drop`` (streams one
chunk then cuts the connection), ``stall`` (streams one chunk, then nothing while
the connection stays open), ``("late", seconds, answer)`` (a whole answer after a
wait), or raw recorded SSE bytes to replay.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from typing import Any

from aiohttp import web


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

    def __init__(self, *behaviours: Any, default: Any = "ok") -> None:
        self.script: deque[Any] = deque(behaviours)
        self.default = default
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._stop = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> "FakeUpstream":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
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
                await asyncio.sleep(0.01)
        else:
            await response.write(OK_STREAM if what == "ok" else what)
        await response.write_eof()
        return response


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
