"""The upstream client's bounded waits: headers, each read of a stream, a whole answer's body."""

from __future__ import annotations

import time

import pytest

from shoal.core.backend import BackendFailure
from shoal.backends.upstream import Timeouts, UpstreamConfig, UpstreamHTTP
from tests.upstream_fakes import FakeUpstream

ANSWER = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def client(url: str, **timeouts: float) -> UpstreamHTTP:
    return UpstreamHTTP(UpstreamConfig(base_url=url, model="m", timeouts=Timeouts(**timeouts)), "upstream t", {})


async def test_a_stream_that_never_starts_times_out_after_first_byte() -> None:
    async with FakeUpstream("hang") as up:
        http = client(up.url, first_byte=0.2, total=30)
        started = time.perf_counter()
        try:
            with pytest.raises(BackendFailure) as failure:
                async with http.post("chat/completions", {**BODY, "stream": True}):
                    pass
        finally:
            await http.aclose()
        assert failure.value.code == "upstream_timeout" and failure.value.retryable
        assert "within 0.2 s" in failure.value.message
        assert time.perf_counter() - started < 2


async def test_a_stream_that_stalls_after_its_first_chunk_times_out_after_read() -> None:
    async with FakeUpstream("stall") as up:
        http = client(up.url, first_byte=5, read=0.2)
        got: list[bytes] = []
        started = time.perf_counter()
        try:
            with pytest.raises(BackendFailure) as failure:
                async with http.post("chat/completions", {**BODY, "stream": True}) as response:
                    async for piece in http.reads(response):
                        got.append(piece)
        finally:
            await http.aclose()
        assert b"Hel" in b"".join(got)  # the first chunk came through before the stall
        assert failure.value.code == "upstream_timeout" and failure.value.message.endswith("stopped sending.")
        assert time.perf_counter() - started < 3


async def test_a_whole_answer_may_take_longer_than_read_but_not_than_total() -> None:
    # A whole answer sends nothing until it is complete: only `total` bounds its wait.
    async with FakeUpstream(("late", 0.5, ANSWER), "hang") as up:
        http = client(up.url, first_byte=0.1, read=0.1, total=2)
        try:
            async with http.post("chat/completions", BODY, whole=True) as response:
                assert (await http.json_body(response))["choices"][0]["message"]["content"] == "Hi"
            started = time.perf_counter()
            with pytest.raises(BackendFailure) as failure:
                async with http.post("chat/completions", BODY, whole=True):
                    pass
            assert failure.value.code == "upstream_timeout" and "within 2 s" in failure.value.message
            assert 1.5 < time.perf_counter() - started < 5
        finally:
            await http.aclose()


async def test_error_status_is_mapped_and_the_connection_released() -> None:
    async with FakeUpstream("500", "ok") as up:
        http = client(up.url)
        try:
            with pytest.raises(BackendFailure) as failure:
                async with http.post("chat/completions", {**BODY, "stream": True}):
                    pass
            assert failure.value.status == 500 and failure.value.retryable
            assert "boom" in failure.value.message
            async with http.post("chat/completions", {**BODY, "stream": True}) as response:
                text = b"".join([piece async for piece in http.reads(response)])
            assert b"[DONE]" in text
        finally:
            await http.aclose()
