"""SSE framing and the keep-alive wrapper."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from shoal import sse
from shoal.app import create_app
from shoal.config import Settings
from tests.live_server import live_server
from tests.scripted import ScriptedBackend, text_script


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


# -- a client that stops reading ---------------------------------------------------------------

STREAMS = {  # every streaming front-end honours --write-timeout-seconds (shoal.api.deps.stream_response)
    "/v1/chat/completions": {"model": "test-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages": {"model": "test-model", "stream": True, "max_tokens": 8000,
                     "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.mark.parametrize("path", list(STREAMS))
def test_a_client_that_stops_reading_loses_its_stream_and_frees_the_slot(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str) -> None:
    """One slot; a streaming client that reads nothing; after the write timeout the next request is served."""
    delta = "x" * 1000
    # Far more than the socket buffers hold (a small send buffer here, a small receive buffer there).
    backend = ScriptedBackend(text_script(*[delta] * 5000), capacity=1)
    settings = Settings(data_dir=tmp_path, write_timeout_seconds=1.0, keepalive_seconds=0.5)
    app = create_app(settings, backend_factory=lambda s: [backend])
    body = orjson.dumps(STREAMS[path])
    request = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with caplog.at_level(logging.WARNING, logger="shoal.sse"), live_server(app, send_buffer=4096) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as slow:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.settimeout(10)
            slow.connect(("127.0.0.1", port))
            slow.sendall(request)
            assert slow.recv(12).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            # The slow client now reads nothing; the slot is its own until the write timeout drops it.
            with httpx.Client(base_url=url, timeout=15) as http:
                second = http.post("/v1/chat/completions",
                                   json={"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
            assert second.status_code == 200, second.text
            assert second.json()["choices"][0]["message"]["content"] == "ok"
            assert time.monotonic() - started < 10  # served once the stall passed the 1 s timeout
            assert backend.closed_early[0] and not backend.finished[0]  # the generation was stopped
            # The stream was cut, not ended: the connection closes without the final chunk.
            received = b""
            while chunk := slow.recv(65536):
                received += chunk
            assert b"[DONE]" not in received and b"message_stop" not in received
            assert not received.endswith(b"0\r\n\r\n")
    assert any(f"read nothing of its stream ({path})" in r.getMessage() for r in caplog.records)
