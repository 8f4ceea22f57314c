"""The two servers of the gateway benchmark: a very fast fake OpenAI-compatible upstream, and the floor proxy.

Run through ``bench_gateway.py upstream`` / ``bench_gateway.py passthrough``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

HOST = "127.0.0.1"


# ---------------------------------------------------------------- fake upstream


def _responses() -> tuple[bytes, bytes]:
    """The fake upstream's two complete HTTP responses (non-streaming, streaming)."""
    body = json.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, friend!"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}).encode()
    plain = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": "fake"}
    deltas = [{"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": " there,"},
              {"content": " friend!"}]
    events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                                                    "total_tokens": 13}})
    frames = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames) + b"0\r\n\r\n"
    stream = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + chunks
    return plain, stream


class FakeUpstream(asyncio.Protocol):
    """A raw HTTP/1.1 keep-alive server: every POST gets the same answer, streamed iff the body says so."""

    def __init__(self, plain: bytes, stream: bytes, models: bytes) -> None:
        self.plain, self.stream, self.models = plain, stream, models
        self.buf = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
            if head.startswith(b"get"):
                self.transport.write(self.models)
            else:
                compact = body.replace(b" ", b"")
                self.transport.write(self.stream if b'"stream":true' in compact else self.plain)


def run_upstream(port: int) -> None:
    """Serve the fake upstream until killed."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    plain, stream = _responses()
    listing = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "x"}]}).encode()
    models = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(listing),
                                                                                                    listing)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: FakeUpstream(plain, stream, models),
                                                                HOST, port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------- pass-through floor


def run_passthrough(port: int, upstream: str) -> None:
    """The floor: Starlette + one pooled aiohttp session, bytes in, bytes out (no auth, metering or routing)."""
    from contextlib import asynccontextmanager

    import aiohttp
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    holder: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        holder["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await holder["session"].close()

    async def chat(request: Request) -> Response:
        resp = await holder["session"].post(f"{upstream}/v1/chat/completions", data=await request.body(),
                                            headers={"content-type": "application/json"})
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            async def relay() -> Any:
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()
            return StreamingResponse(relay(), status_code=resp.status, media_type="text/event-stream")
        data = await resp.read()
        resp.release()
        return Response(data, status_code=resp.status, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"ok")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health", health)],
                    lifespan=lifespan)
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)
