"""A fault-injecting OpenAI-compatible upstream on 127.0.0.1 (aiohttp), for ``type: openai`` deployments.

It answers ``POST /v1/chat/completions`` (streamed iff the body says so) with a
short answer whose chunks are ``gap`` seconds apart, so that requests are in
flight when a fault strikes. When :attr:`FaultUpstream.fault` is set, every
``every``-th request gets it instead:

* ``500`` / ``429`` (with ``retry-after: 1``): an error status before any byte of answer;
* ``hang``: headers never come (bounded by ``hang_seconds``; Shoal's ``first_byte`` /
  ``total`` timeouts are meant to end it first);
* ``reset``: the connection is reset (RST) as soon as the request has arrived;
* ``drop``: a 200 whose body stops halfway and whose connection is then closed
  (two chunks of a stream; half of a ``content-length`` JSON body);
* ``truncate``: a 200 that ends cleanly but early: a stream without its finish chunk and
  ``[DONE]``, a whole answer whose ``finish_reason`` is null.

Settings are plain attributes, read on every request, so the driver can change
them from another thread between phases.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

from aiohttp import web

FAULTS = ("500", "429", "hang", "reset", "drop", "truncate")
MODEL = "fake"
PROMPT_TOKENS = 20
WORDS = ("Hello", " there", ",", " friend", "!", " How", " are", " you", "?")


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage(words: int) -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": words, "total_tokens": PROMPT_TOKENS + words}


class FaultUpstream:
    """The upstream; run it on a :class:`~benchmarks.reliability.loop.LoopThread` (``await start()``)."""

    def __init__(self, *, gap: float = 0.02, words: int = len(WORDS), hang_seconds: float = 60.0) -> None:
        self.fault: str | None = None
        self.every = 2
        self.gap = gap
        self.words = words
        self.hang_seconds = hang_seconds
        self.requests = 0
        self.faulted = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """The base URL a deployment points at (with ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, port: int = 0) -> "FaultUpstream":
        """Listen on 127.0.0.1 (``port`` 0: any free port)."""
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Release every hanging request and stop listening."""
        if self._stop is not None:
            self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "x"}]})

    def _pick(self) -> str | None:
        self.requests += 1
        if self.fault is None or self.requests % max(1, self.every):
            return None
        self.faulted += 1
        return self.fault

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        stream = bool(body.get("stream"))
        words = min(self.words, int(body.get("max_tokens") or body.get("max_completion_tokens") or self.words))
        fault = self._pick()
        if fault == "500":
            return web.json_response({"error": {"message": "injected 500", "type": "server_error"}}, status=500)
        if fault == "429":
            return web.json_response({"error": {"message": "injected 429", "type": "rate_limit"}}, status=429,
                                     headers={"retry-after": "1"})
        if fault == "hang":
            assert self._stop is not None
            try:
                await asyncio.wait_for(self._stop.wait(), self.hang_seconds)
            except asyncio.TimeoutError:
                pass
            return web.json_response({"error": {"message": "hung"}}, status=504)
        if fault == "reset":
            _reset(request)
            return web.Response(status=500)  # never reaches the caller: its connection is gone
        try:
            if stream:
                return await self._stream(request, words, drop=fault == "drop", cut_short=fault == "truncate")
            return await self._whole(request, words, drop=fault == "drop", cut_short=fault == "truncate")
        except ConnectionResetError:  # the caller went away (a killed server, a cancelled request)
            return web.Response(status=499)

    async def _stream(self, request: web.Request, words: int, drop: bool, cut_short: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant", "content": ""}))
        for i in range(words):
            await asyncio.sleep(self.gap)
            await response.write(_chunk({"content": WORDS[i % len(WORDS)]}))
            if drop and i == 1:
                await asyncio.sleep(0.05)  # the first chunks reach the caller before the connection goes
                assert request.transport is not None
                request.transport.close()
                return response
            if cut_short and i == 1:
                await response.write_eof()
                return response
        await response.write(_chunk({}, "stop"))
        await response.write(b"data: " + json.dumps({"id": "chatcmpl-fault", "object": "chat.completion.chunk",
                                                      "created": 1, "model": MODEL, "choices": [],
                                                      "usage": _usage(words)}).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _whole(self, request: web.Request, words: int, drop: bool, cut_short: bool) -> web.StreamResponse:
        await asyncio.sleep(self.gap * words)
        text = "".join(WORDS[i % len(WORDS)] for i in range(words))
        data = json.dumps({"id": "chatcmpl-fault", "object": "chat.completion", "created": 1, "model": MODEL,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": None if cut_short else "stop"}],
                           "usage": _usage(words)}).encode()
        response = web.StreamResponse(headers={"content-type": "application/json",
                                               "content-length": str(len(data))})
        await response.prepare(request)
        if drop:
            await response.write(data[:len(data) // 2])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(data)
        await response.write_eof()
        return response


def _reset(request: web.Request) -> None:
    """Abort the request's connection with a TCP RST (SO_LINGER 0), before any byte of answer."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
