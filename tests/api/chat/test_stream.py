"""Chat encoders: the chat.completion body and the chat.completion.chunk SSE stream."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from shoal.api.chat.stream import chunk_frames, completion_body
from shoal.core.types import Finish, ReasoningDelta, TextDelta, TokenLogprob, ToolCallDelta, Usage
from shoal.errors import BackendError
from tests.frames import collect, data_payloads, events_of

USAGE = Usage(input_tokens=31, output_tokens=8, cached_tokens=24, reasoning_tokens=3)
LP = TokenLogprob("Hi", -0.5, (72, 105), (("Hi", -0.5, (72, 105)), ("Hey", -1.5, (72, 101, 121))))
IDS = {"completion_id": "chatcmpl-1", "created": 1700000000, "model": "test-model"}

TEXT = [TextDelta("Hi", (LP,)), TextDelta(" there"), Finish("stop", USAGE)]
REASONING = [ReasoningDelta("think"), ReasoningDelta("ing"), TextDelta("42"), Finish("stop", USAGE)]
TOOLS = [ToolCallDelta(0, id="call_a", name="get_weather"), ToolCallDelta(0, arguments='{"city":'),
         ToolCallDelta(0, arguments='"Paris"}'), ToolCallDelta(1, id="call_b", name="get_time", arguments="{}"),
         Finish("tool_calls", USAGE)]


async def body(events: list[Any], logprobs: bool = False) -> dict[str, Any]:
    result = await completion_body(events_of(events), logprobs=logprobs, **IDS)
    ChatCompletion.model_validate(result)
    return result


async def stream(events: list[Any], *, include_usage: bool = False, logprobs: bool = False) -> tuple[bytes, list]:
    raw = await collect(chunk_frames(events_of(events), include_usage=include_usage, logprobs=logprobs, **IDS))
    return raw, data_payloads(raw)


# -- body ------------------------------------------------------------------------

async def test_body_text_with_usage_details() -> None:
    result = await body(TEXT)
    assert result["object"] == "chat.completion"
    assert result["id"] == "chatcmpl-1" and result["model"] == "test-model" and result["created"] == 1700000000
    (choice,) = result["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hi there", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert result["usage"] == {
        "prompt_tokens": 31, "completion_tokens": 8, "total_tokens": 39,
        "prompt_tokens_details": {"cached_tokens": 24},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


async def test_body_logprobs() -> None:
    result = await body(TEXT, logprobs=True)
    parsed = ChatCompletion.model_validate(result)
    assert parsed.choices[0].logprobs is not None
    content = parsed.choices[0].logprobs.content
    assert content is not None and [t.token for t in content] == ["Hi"]
    assert content[0].bytes == [72, 105]
    assert [t.token for t in content[0].top_logprobs] == ["Hi", "Hey"]


async def test_body_reasoning_content() -> None:
    result = await body(REASONING)
    msg = result["choices"][0]["message"]
    assert msg["content"] == "42"
    assert msg["reasoning_content"] == "thinking"


async def test_body_tool_calls() -> None:
    result = await body(TOOLS)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]


async def test_body_length() -> None:
    assert (await body([TextDelta("a"), Finish("length", USAGE)]))["choices"][0]["finish_reason"] == "length"


async def test_body_failure_propagates() -> None:
    with pytest.raises(BackendError):
        await completion_body(events_of([TextDelta("a"), BackendError("x")]), logprobs=False, **IDS)


# -- stream ----------------------------------------------------------------------

def check_chunks(raw: bytes, payloads: list[Any], *, include_usage: bool) -> list[dict[str, Any]]:
    """The rules every chat stream follows; returns the chunks (without [DONE])."""
    assert raw.endswith(b"data: [DONE]\n\n")
    for line in raw.split(b"\n")[:-1]:
        assert line == b"" or line.startswith(b"data: ")
    assert raw.count(b"\n\n") == len(payloads)
    assert payloads[-1] == "[DONE]" and "[DONE]" not in payloads[:-1]
    chunks = payloads[:-1]
    for c in chunks:
        if "error" not in c:
            ChatCompletionChunk.model_validate(c)
            assert c["id"] == "chatcmpl-1" and c["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:] if c.get("choices"))
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    if "error" not in chunks[-1]:
        assert [f for f in finishes if f] == [finishes[-1]], finishes  # exactly one, on the last choice chunk
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None
        assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    else:
        assert all("usage" not in c for c in chunks)
    return chunks


@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_text(include_usage: bool) -> None:
    raw, payloads = await stream(TEXT, include_usage=include_usage)
    chunks = check_chunks(raw, payloads, include_usage=include_usage)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {"content": " there"}, {}]
    assert chunks[len(deltas) - 1]["choices"][0]["finish_reason"] == "stop"
    if include_usage:
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 31, "completion_tokens": 8, "total_tokens": 39,
            "prompt_tokens_details": {"cached_tokens": 24}, "completion_tokens_details": {"reasoning_tokens": 3}}
        ChatCompletionChunk.model_validate(chunks[-1])


async def test_stream_logprobs() -> None:
    raw, payloads = await stream(TEXT, logprobs=True)
    chunks = check_chunks(raw, payloads, include_usage=False)
    parsed = ChatCompletionChunk.model_validate(chunks[1])
    assert parsed.choices[0].logprobs is not None
    assert parsed.choices[0].logprobs.content is not None
    assert parsed.choices[0].logprobs.content[0].token == "Hi"
    assert chunks[2]["choices"][0]["logprobs"] == {"content": [], "refusal": None}


async def test_stream_reasoning() -> None:
    raw, payloads = await stream(REASONING)
    chunks = check_chunks(raw, payloads, include_usage=False)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[1:4] == [{"reasoning_content": "think"}, {"reasoning_content": "ing"}, {"content": "42"}]


async def test_stream_tool_calls() -> None:
    raw, payloads = await stream(TOOLS, include_usage=True)
    chunks = check_chunks(raw, payloads, include_usage=True)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"]
             and "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "call_a", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert calls[1] == {"index": 0, "function": {"arguments": '{"city":'}}
    assert calls[3]["id"] == "call_b" and calls[3]["function"] == {"name": "get_time", "arguments": "{}"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_error_mid_stream(include_usage: bool) -> None:
    raw, payloads = await stream([TextDelta("a"), BackendError("engine died")], include_usage=include_usage)
    chunks = payloads[:-1]
    assert payloads[-1] == "[DONE]"
    assert raw.endswith(b"data: [DONE]\n\n")
    assert chunks[-1] == {"error": {"message": "engine died", "type": "server_error", "param": None,
                                    "code": "backend_error"}}
    for c in chunks[:-1]:
        ChatCompletionChunk.model_validate(c)
        assert c["choices"][0]["finish_reason"] is None
        assert ("usage" in c) is include_usage


async def test_every_line_is_newline_terminated() -> None:
    raw, _ = await stream(REASONING, include_usage=True)
    assert not raw.split(b"\n")[-1]  # the text ends with a newline
    for frame in raw.split(b"\n\n")[:-1]:
        assert frame.startswith(b"data: ") and b"\n" not in frame
