"""Server-sent events framing: the only module that writes ``data:`` lines.

Every frame ends with a blank line and every line with ``\\n``: pydo parses each
``data:`` line on its own and needs that terminator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def dumps(obj: Any) -> bytes:
    """Compact JSON, as every frame and body uses."""
    return orjson.dumps(obj)


def data_frame(obj: Any) -> bytes:
    """A ``data: {json}`` frame (chat completions chunks)."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def event_frame(event: str, obj: Any) -> bytes:
    """An ``event: <type>`` + ``data: {json}`` frame (Responses semantic events)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


async def with_keepalive(frames: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """Yield ``frames``, inserting a comment frame whenever none came for ``interval`` s.

    Long prompt processing produces no tokens for a while; proxies and clients
    would otherwise time the connection out.
    """
    it = frames.__aiter__()
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield KEEPALIVE
                continue
            task, pending = pending, None
            try:
                frame = task.result()
            except StopAsyncIteration:
                return
            yield frame
    finally:
        if pending is not None:
            pending.cancel()
            # Let the cancellation run through the generator before closing it.
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(frames: AsyncIterator[bytes], *, headers: dict[str, str] | None = None,
                 keepalive: float | None = 15.0) -> StreamingResponse:
    """Wrap an iterator of frames in a ``text/event-stream`` response."""
    body = with_keepalive(frames, keepalive) if keepalive else frames
    return StreamingResponse(body, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
