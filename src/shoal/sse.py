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

from shoal.aio import Deadlines

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
    would otherwise time the connection out. One task reads ``frames`` for the
    whole stream (a task per frame cost more than relaying the frame); waiting on
    its queue can time out without disturbing it.
    """
    # One frame ahead at most: a client that stops reading stops the generation behind it.
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async for frame in frames:
                await queue.put(frame)
        except Exception as exc:  # noqa: BLE001 - re-raised in the consumer, where the response sees it
            await queue.put(_Failed(exc))
            return
        await queue.put(_DONE)

    producer = asyncio.ensure_future(produce())
    # One timer for the whole stream, not one armed and cancelled per frame.
    deadlines = Deadlines()
    try:
        while True:
            try:
                with deadlines.limit(interval):
                    item = await queue.get()
            except asyncio.TimeoutError:
                yield KEEPALIVE
                continue
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        # Cancelling the reader runs the frames' own cleanup (a generation frees its slot).
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:
            await aclose()


class _Failed:
    """An exception raised by the frames, carried to the consumer."""

    def __init__(self, error: Exception) -> None:
        self.error = error


_DONE = object()


def sse_response(frames: AsyncIterator[bytes], *, headers: dict[str, str] | None = None,
                 keepalive: float | None = 15.0) -> StreamingResponse:
    """Wrap an iterator of frames in a ``text/event-stream`` response."""
    body = with_keepalive(frames, keepalive) if keepalive else frames
    return StreamingResponse(body, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
