"""Messages encoders: the ``message`` object and the SSE event stream, checked with the anthropic SDK's own types."""

from __future__ import annotations

import json
from typing import Any

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from shoal.api.messages.stream import event_frames, message_body, signature
from shoal.core.types import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from shoal.errors import BackendError
from tests.frames import collect, events_of, split_frames

USAGE = Usage(input_tokens=31, output_tokens=8, cached_tokens=24, reasoning_tokens=3)
IDS = {"message_id": "msg_1", "model": "test-model"}
EVENT = TypeAdapter(RawMessageStreamEvent)

TEXT = [TextDelta("Hi"), TextDelta(" there"), Finish("stop", USAGE)]
REASONING = [ReasoningDelta("think"), ReasoningDelta("ing"), TextDelta("42"), Finish("stop", USAGE)]
TOOLS = [TextDelta("Let me check."), ToolCallDelta(0, id="toolu_a", name="get_weather"),
         ToolCallDelta(0, arguments='{"city":'), ToolCallDelta(0, arguments='"Paris"}'),
         ToolCallDelta(1, id="toolu_b", name="get_time", arguments="{}"), Finish("tool_calls", USAGE)]


async def body(events: list[Any]) -> dict[str, Any]:
    result = await message_body(events_of(events), **IDS)
    Message.model_validate(result)
    return result


async def frames(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of every frame; each name equals its payload's type, each payload is a valid event."""
    raw = await collect(event_frames(events_of(events), **IDS))
    out = []
    for frame in split_frames(raw):
        payload = json.loads(frame["data"])
        assert frame["event"] == payload["type"]
        out.append((frame["event"], payload))
    return out


def rebuilt(stream: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The message the SDK's stream helper builds from the events (it rejects any other order)."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, payload in stream:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=EVENT.validate_python(payload), current_snapshot=snapshot,
                                    json_bufs=json_bufs)
    assert snapshot is not None
    return snapshot.model_dump(exclude_none=True)


def kinds(stream: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name if name != "content_block_delta" else payload["delta"]["type"] for name, payload in stream]


async def test_text_body() -> None:
    result = await body(TEXT)
    assert result["id"] == "msg_1" and result["type"] == "message" and result["role"] == "assistant"
    assert result["content"] == [{"type": "text", "text": "Hi there"}]
    assert (result["stop_reason"], result["stop_sequence"]) == ("end_turn", None)
    # Anthropic counts cached prompt tokens apart from input_tokens.
    assert result["usage"] == {"input_tokens": 7, "output_tokens": 8, "cache_read_input_tokens": 24,
                               "cache_creation_input_tokens": 0}


async def test_text_stream_event_order() -> None:
    stream = await frames(TEXT)
    assert kinds(stream) == ["message_start", "ping", "content_block_start", "text_delta", "text_delta",
                             "content_block_stop", "message_delta", "message_stop"]
    start = stream[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["id"] == "msg_1"
    delta = stream[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 8 and delta["usage"]["cache_read_input_tokens"] == 24


async def test_reasoning_becomes_a_signed_thinking_block() -> None:
    result = await body(REASONING)
    assert result["content"] == [{"type": "thinking", "thinking": "thinking", "signature": signature("thinking")},
                                 {"type": "text", "text": "42"}]
    stream = await frames(REASONING)
    assert kinds(stream) == ["message_start", "ping", "content_block_start", "thinking_delta", "thinking_delta",
                             "signature_delta", "content_block_stop", "content_block_start", "text_delta",
                             "content_block_stop", "message_delta", "message_stop"]
    assert stream[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert [p["index"] for n, p in stream if n.startswith("content_block")] == [0, 0, 0, 0, 0, 1, 1, 1]


async def test_tool_calls_are_tool_use_blocks() -> None:
    result = await body(TOOLS)
    assert result["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
    ]
    assert result["stop_reason"] == "tool_use"
    stream = await frames(TOOLS)
    assert kinds(stream) == ["message_start", "ping",
                             "content_block_start", "text_delta", "content_block_stop",
                             "content_block_start", "input_json_delta", "input_json_delta", "content_block_stop",
                             "content_block_start", "input_json_delta", "content_block_stop",
                             "message_delta", "message_stop"]
    assert stream[5][1]["content_block"] == {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}


async def test_stream_rebuilds_the_body() -> None:
    for events in (TEXT, REASONING, TOOLS):
        whole = await body(events)
        built = rebuilt(await frames(events))
        assert built["content"] == whole["content"]
        assert built["stop_reason"] == whole["stop_reason"] and built["usage"] == whole["usage"]


async def test_stop_reasons() -> None:
    assert (await body([TextDelta("a"), Finish("length", USAGE)]))["stop_reason"] == "max_tokens"
    stopped = await body([TextDelta("a"), Finish("stop", USAGE, stop_sequence="END")])
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "END")
    stream = await frames([TextDelta("a"), Finish("stop", USAGE, stop_sequence="END")])
    assert stream[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


async def test_failure_after_the_stream_began_is_an_error_event() -> None:
    stream = await frames([TextDelta("partial"), BackendError("the engine crashed")])
    assert kinds(stream) == ["message_start", "ping", "content_block_start", "text_delta", "error"]
    assert stream[-1][1] == {"type": "error", "error": {"type": "api_error", "message": "the engine crashed"}}


async def test_unparsable_tool_arguments_are_kept() -> None:
    result = await body([ToolCallDelta(0, id="t", name="f", arguments="{oops"), Finish("tool_calls", USAGE)])
    assert result["content"][0]["input"] == {"_raw": "{oops"}
