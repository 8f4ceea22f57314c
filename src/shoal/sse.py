"""Server-sent events framing: the only module that writes ``data:`` lines.

Every frame ends with a blank line and every line with ``\\n``: pydo parses each
``data:`` line on its own and needs that terminator.

A client that stops reading would hold its generation's slot for ever: once the socket's
buffers are full, uvicorn's ``send`` waits until the client reads. Every write of a stream
therefore has a deadline (``write_timeout``); past it the stream is abandoned, its
generation closed (which frees the slot) and the connection dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from shoal.aio import Deadlines

log = logging.getLogger("shoal.sse")

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


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response whose every write must finish within ``write_timeout`` s.

    A write that takes longer means the client stopped reading (its buffers are full). The
    stream is then closed, which stops its generation and frees the slot, and the response
    ends without its last chunk: the server drops the connection, so the client sees a
    truncated stream rather than a complete one.
    """

    def __init__(self, content: AsyncIterator[bytes], *, write_timeout: float | None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.write_timeout = write_timeout
        self.path = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the stream (remembering its path for the stall's log line)."""
        self.path = scope.get("path", "")
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        """Send the head and every frame, each write bounded by ``write_timeout``."""
        if self.write_timeout is None:
            await super().stream_response(send)
            return
        # One timer for the whole stream (see Deadlines), not one armed and cancelled per frame.
        deadlines = Deadlines()
        timeout = self.write_timeout

        async def bounded(message: Message) -> None:
            with deadlines.limit(timeout):
                await send(message)

        try:
            await super().stream_response(bounded)
        except asyncio.TimeoutError:
            log.warning("a client read nothing of its stream (%s) for %.0f s: closed the stream and "
                        "freed its slot", self.path, timeout)
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def sse_response(frames: AsyncIterator[bytes], *, headers: dict[str, str] | None = None,
                 keepalive: float | None = 15.0, write_timeout: float | None = 30.0) -> StreamingResponse:
    """Wrap an iterator of frames in a ``text/event-stream`` response.

    ``keepalive``: seconds without a frame before a comment frame is sent (None: never).
    ``write_timeout``: seconds one write may wait for the client to read before the stream
    is abandoned and its generation stopped (None: wait for ever).
    """
    body = with_keepalive(frames, keepalive) if keepalive else frames
    return EventStreamResponse(body, write_timeout=write_timeout, headers={**SSE_HEADERS, **(headers or {})})
