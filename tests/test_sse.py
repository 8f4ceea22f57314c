"""SSE framing and the keep-alive wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from shoal import sse


def test_data_frame() -> None:
    assert sse.data_frame({"a": "é\n", "b": None}) == b'data: {"a":"\xc3\xa9\\n","b":null}\n\n'


def test_event_frame() -> None:
    frame = sse.event_frame("response.created", {"type": "response.created", "sequence_number": 0})
    assert frame == b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'


def test_constants_and_dumps() -> None:
    assert sse.DONE == b"data: [DONE]\n\n"
    assert sse.KEEPALIVE.startswith(b":") and sse.KEEPALIVE.endswith(b"\n\n")
    assert orjson.loads(sse.dumps({"x": [1]})) == {"x": [1]}
    assert b"\n" not in sse.dumps({"text": "multi\nline"})  # JSON escapes newlines: one line per data field


class Source:
    """Frames with optional pauses; records whether it was closed."""

    def __init__(self, *items: bytes | float) -> None:
        self.items = items
        self.closed = False
        self.finished = False

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            for item in self.items:
                if isinstance(item, float):
                    await asyncio.sleep(item)
                else:
                    yield item
            self.finished = True
        finally:
            self.closed = True


async def test_keepalive_inserted_when_source_is_slow() -> None:
    src = Source(b"a", 0.18, b"b")
    out = [f async for f in sse.with_keepalive(src.frames(), 0.05)]
    assert out[0] == b"a" and out[-1] == b"b"
    assert set(out[1:-1]) == {sse.KEEPALIVE} and 2 <= len(out) - 2 <= 4
    assert src.finished


async def test_no_keepalive_when_source_is_fast() -> None:
    src = Source(b"a", b"b", b"c")
    assert [f async for f in sse.with_keepalive(src.frames(), 0.05)] == [b"a", b"b", b"c"]


async def test_consumer_stopping_early_closes_the_source() -> None:
    src = Source(b"a", 10.0, b"never")
    stream = sse.with_keepalive(src.frames(), 0.02)
    assert await stream.__anext__() == b"a"
    assert await stream.__anext__() == sse.KEEPALIVE  # the source is now mid-sleep in another task
    await stream.aclose()
    assert src.closed and not src.finished


async def test_consumer_stopping_between_frames_closes_the_source() -> None:
    src = Source(b"a", b"b", b"c")
    stream = sse.with_keepalive(src.frames(), 1.0)
    assert await stream.__anext__() == b"a"
    await stream.aclose()
    assert src.closed and not src.finished


async def test_source_error_propagates_and_closes() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"a"
        raise RuntimeError("boom")

    stream = sse.with_keepalive(failing(), 1.0)
    assert await stream.__anext__() == b"a"
    try:
        await stream.__anext__()
    except RuntimeError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the error was swallowed")


async def test_sse_response_headers_and_body() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield sse.data_frame({"x": 1})
        yield sse.DONE

    resp = sse.sse_response(frames(), headers={"x-shoal-model": "m"}, keepalive=None)
    assert resp.media_type == "text/event-stream"
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-accel-buffering"] == "no"
    assert resp.headers["x-shoal-model"] == "m"
    body = b"".join([chunk async for chunk in resp.body_iterator])  # type: ignore[misc]
    assert body == b'data: {"x":1}\n\ndata: [DONE]\n\n'
