"""The Responses state machine: event order, SDK validity, reasoning-first output, the choices mirror."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
from openai.types.responses import Response

from shoal import sse
from shoal.api.responses.builder import IllegalTransition, ResponseBuilder
from shoal.api.responses.echo import echo_fields
from shoal.core.types import Finish, ReasoningDelta, TextDelta, TokenLogprob, ToolCallDelta, Usage
from shoal.errors import BackendError, InvalidRequestError, ShoalError
from shoal.protocol.responses import ResponsesRequest
from tests.api.responses.sdk import sdk_accumulate, validate_event
from tests.frames import events_of, split_frames

USAGE = Usage(input_tokens=31, output_tokens=8, cached_tokens=24, reasoning_tokens=2)
LP = TokenLogprob("Hello", -0.5, tuple(b"Hello"), (("Hello", -0.5, tuple(b"Hello")), ("Hi", -2.0, (72, 105))))

SCENARIOS: dict[str, list[Any]] = {
    "text": [TextDelta("Hello", (LP,)), TextDelta(" world"), Finish("stop", USAGE)],
    "reasoning_then_text": [ReasoningDelta("Let me"), ReasoningDelta(" think."), TextDelta("42"),
                            Finish("stop", USAGE)],
    "tool_calls": [TextDelta("Checking."),
                   ToolCallDelta(0, id="call_a", name="get_weather", arguments='{"city":'),
                   ToolCallDelta(0, arguments='"Paris"}'),
                   ToolCallDelta(1, id="call_b", name="get_time"), ToolCallDelta(1, arguments="{}"),
                   Finish("tool_calls", USAGE)],
    "length": [ReasoningDelta("hmm"), TextDelta("cut"), Finish("length", USAGE)],
    "empty": [Finish("stop", Usage(3, 0))],
    "failure_mid_text": [ReasoningDelta("r"), TextDelta("a"), BackendError("engine died")],
    "failure_mid_tool_call": [ToolCallDelta(0, id="c", name="f", arguments="{"), BackendError("engine died")],
    "failure_before_first_event": [BackendError("engine died")],
}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
GRAMMAR = {
    "message": "added part_added (output_text.delta )*output_text.done part_done done",
    "reasoning": "added part_added (reasoning_text.delta )*reasoning_text.done part_done done",
    "function_call": "added (function_call_arguments.delta )*function_call_arguments.done done",
}
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
         {"type": "function", "function": {"name": "get_time"}}]


def builder(logprobs: bool = True) -> ResponseBuilder:
    body = ResponsesRequest.model_validate({"model": "test-model", "input": "hi", "tools": TOOLS,
                                            "metadata": {"k": "v"}, "max_tokens": 50})
    return ResponseBuilder(echo_fields(body, "test-model"), logprobs=logprobs)


async def drive(b: ResponseBuilder, items: list[Any]) -> AsyncIterator[dict[str, Any]]:
    """What the service does with a generation: start, feed every event, fail on a ShoalError."""
    for event in b.start():
        yield event
    try:
        async for item in events_of(items):
            for event in b.feed(item):
                yield event
    except ShoalError as exc:
        for event in b.fail(exc):
            yield event


async def streamed(items: list[Any], logprobs: bool = True) -> list[dict[str, Any]]:
    """Stream ``items`` as SSE; return the events parsed back from the bytes."""
    import json

    raw = b"".join([sse.event_frame(e["type"], e) async for e in drive(builder(logprobs), items)])
    events = []
    for frame in split_frames(raw):
        assert set(frame) == {"event", "data"}
        event = json.loads(frame["data"])
        assert frame["event"] == event["type"]
        events.append(event)
    return events


def non_streamed(items: list[Any]) -> dict[str, Any]:
    b = builder()
    for item in items:
        b.feed(item)
    return b.response


def check_order(events: list[dict[str, Any]]) -> None:
    """The ordering rules of the wire contract (what responses.stream() relies on)."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[1]["type"] == "response.in_progress"
    assert [e["type"] in TERMINAL for e in events] == [False] * (len(events) - 1) + [True]
    final = events[-1]["response"]
    ids = {final["id"]} | {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1

    per_item: dict[int, list[str]] = {}
    kinds: dict[int, str] = {}
    item_ids: dict[int, str] = {}
    current = -1
    for e in events[2:-1]:
        index = e["output_index"]
        short = e["type"].removeprefix("response.").replace("output_item.", "").replace("content_part.", "part_")
        if short == "added":
            assert index == current + 1, "items are added in order, one at a time"
            current = index
            kinds[index] = e["item"]["type"]
            item_ids[index] = e["item"]["id"]
            assert e["item"]["status"] == "in_progress"
        assert index == current, "no event for an item after the next one was added"
        if "item_id" in e:
            assert e["item_id"] == item_ids[index]
        if "content_index" in e:
            assert e["content_index"] == 0
        per_item.setdefault(index, []).append(short)
    for index, types in per_item.items():
        sequence = " ".join(types) + " "
        grammar = GRAMMAR[kinds[index]]
        last_closed = events[-1]["type"] != "response.failed" or index < current
        if last_closed:
            assert re.fullmatch(grammar.replace(" ", r"\ ") + r"\ ", sequence), sequence
        else:  # the item open when the stream failed: a prefix of the grammar
            assert "done" not in types, sequence
    assert len(final["output"]) == current + 1


# -- order, per scenario -------------------------------------------------------------------

@pytest.mark.parametrize("name", SCENARIOS)
async def test_event_order(name: str) -> None:
    events = await streamed(SCENARIOS[name])
    check_order(events)


@pytest.mark.parametrize("name", SCENARIOS)
async def test_sdk_stream_state_accepts_the_stream(name: str) -> None:
    events = await streamed(SCENARIOS[name])
    final = sdk_accumulate(events)
    if events[-1]["type"] == "response.completed":
        assert final is not None and final.id == events[-1]["response"]["id"]
        assert final.output_text == "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    else:
        assert final is None


@pytest.mark.parametrize("name", SCENARIOS)
async def test_every_event_validates_with_the_sdk(name: str) -> None:
    for event in await streamed(SCENARIOS[name]):
        validate_event(event)


@pytest.mark.parametrize("name", ["text", "length"])
async def test_terminal_usage_validates_strictly(name: str) -> None:
    events = await streamed(SCENARIOS[name])
    validate_event(events[-1])


async def test_failed_error_code_validates_strictly() -> None:
    events = await streamed(SCENARIOS["failure_mid_text"])
    validate_event(events[-1])


def test_validation_catches_a_missing_field() -> None:
    """The SDK check has teeth: dropping a required field must fail it."""
    event = {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1", "output_index": 0,
             "content_index": 0, "delta": "x", "logprobs": []}
    validate_event(event)
    del event["logprobs"]
    with pytest.raises(pydantic.ValidationError):
        validate_event(event)


# -- content of the events and the final response -----------------------------------------------

async def test_text_stream_contents() -> None:
    events = await streamed(SCENARIOS["text"])
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ["Hello", " world"]
    assert deltas[0]["logprobs"][0]["token"] == "Hello"
    assert deltas[0]["logprobs"][0]["top_logprobs"][1] == {"token": "Hi", "logprob": -2.0, "bytes": [72, 105]}
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == "Hello world" and len(done["logprobs"]) == 1
    final = events[-1]
    assert final["type"] == "response.completed"
    resp = final["response"]
    assert resp["status"] == "completed" and resp["error"] is None and resp["incomplete_details"] is None
    assert resp["completed_at"] >= resp["created_at"] and resp["created"] == resp["created_at"]
    assert resp["model"] == "test-model" and resp["max_output_tokens"] == 50 and resp["metadata"] == {"k": "v"}
    assert resp["usage"]["input_tokens"] == 31 and resp["usage"]["total_tokens"] == 39
    assert resp["usage"]["input_tokens_details"]["cached_tokens"] == 24
    assert resp["usage"]["output_tokens_details"] == {"reasoning_tokens": 2, "tool_output_tokens": 0}
    (item,) = resp["output"]
    assert item["type"] == "message" and item["role"] == "assistant" and item["status"] == "completed"
    assert item["content"][0]["type"] == "output_text" and item["content"][0]["text"] == "Hello world"
    assert resp["choices"] == [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "Hello world"}}]
    parsed = Response.model_validate(resp)
    assert parsed.output_text == "Hello world"


async def test_logprobs_are_empty_unless_asked() -> None:
    events = await streamed(SCENARIOS["text"], logprobs=False)
    assert all(e["logprobs"] == [] for e in events if e["type"].startswith("response.output_text."))


async def test_reasoning_first() -> None:
    events = await streamed(SCENARIOS["reasoning_then_text"])
    resp = Response.model_validate(events[-1]["response"])
    assert [o.type for o in resp.output] == ["reasoning", "message"]
    reasoning = resp.output[0]
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text == "Let me think."
    assert reasoning.summary == []
    message = resp.output[1]
    assert message.type == "message" and message.content[0].type == "output_text"
    assert message.content[0].text == "42"  # what the seed's resp.output[1].content[0].text reads
    assert [e["delta"] for e in events if e["type"] == "response.reasoning_text.delta"] == ["Let me", " think."]
    assert events[-1]["response"]["choices"][0]["message"] == {
        "role": "assistant", "content": "42", "reasoning_content": "Let me think."}


async def test_tool_calls() -> None:
    events = await streamed(SCENARIOS["tool_calls"])
    resp = events[-1]["response"]
    assert [o["type"] for o in resp["output"]] == ["message", "function_call", "function_call"]
    calls = resp["output"][1:]
    assert [(c["call_id"], c["name"], c["arguments"], c["status"]) for c in calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}', "completed"), ("call_b", "get_time", "{}", "completed")]
    assert all(c["id"].startswith("fc_") for c in calls)
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added[1]["name"] == "get_weather" and added[1]["arguments"] == ""
    arg_done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in arg_done] == [("get_weather", '{"city":"Paris"}'),
                                                                ("get_time", "{}")]
    choice = resp["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]
    Response.model_validate(resp)


async def test_length_is_incomplete_max_output_tokens() -> None:
    events = await streamed(SCENARIOS["length"])
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["choices"][0]["finish_reason"] == "length"
    parsed = Response.model_validate(final["response"])
    assert parsed.incomplete_details is not None and parsed.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("name", ["failure_mid_text", "failure_mid_tool_call", "failure_before_first_event"])
async def test_failure_ends_with_response_failed(name: str) -> None:
    events = await streamed(SCENARIOS[name])
    final = events[-1]
    assert final["type"] == "response.failed"
    resp = final["response"]
    assert resp["status"] == "failed"
    assert resp["error"]["message"] == "engine died"
    assert resp["error"]["code"]
    assert resp["choices"][0]["finish_reason"] == "error"
    assert all(o["status"] == "incomplete" for o in resp["output"] if o is resp["output"][-1])
    Response.model_validate(resp)


async def test_client_error_mid_stream_keeps_its_message() -> None:
    events = await streamed([TextDelta("a"), InvalidRequestError("prompt too long", code="context_length_exceeded")])
    assert events[-1]["response"]["error"]["message"] == "prompt too long"


@pytest.mark.parametrize("name", [n for n in SCENARIOS if not n.startswith("failure")])
async def test_non_streaming_equals_streamed_final_snapshot(name: str) -> None:
    items = SCENARIOS[name]
    final = (await streamed(items))[-1]["response"]
    whole = non_streamed(items)
    assert normalize(final) == normalize(whole)


def normalize(resp: dict[str, Any]) -> dict[str, Any]:
    import json

    text = json.dumps(resp, sort_keys=True)
    for n, found in enumerate(dict.fromkeys(re.findall(r'"((?:resp|msg|rs|fc)_[0-9a-f]+)"', text))):
        text = text.replace(found, f"id{n}")
    out = json.loads(text)
    for key in ("created_at", "created", "completed_at"):
        out[key] = bool(out[key])
    return out


def test_builder_streamed_snapshot_is_the_builder_response() -> None:
    b = builder()
    events = b.start()
    for item in SCENARIOS["reasoning_then_text"]:
        events += b.feed(item)
    assert events[-1]["response"] == b.response
    assert b.id.startswith("resp_") and b.sequence == len(events)


def test_interleaved_tool_call_fragments_stay_one_item_per_call() -> None:
    b = builder()
    b.start()
    for item in [ToolCallDelta(0, id="call_a", name="a", arguments='{"x":'),
                 ToolCallDelta(1, id="call_b", name="b", arguments="{}"),
                 ToolCallDelta(0, arguments="1}"), Finish("tool_calls", USAGE)]:
        b.feed(item)
    calls = [(o["call_id"], o["name"], o["arguments"]) for o in b.response["output"]]
    assert calls == [("call_a", "a", '{"x":1}'), ("call_b", "b", "{}")]


def test_interleaved_tool_calls_stream_in_an_order_the_sdk_accepts() -> None:
    events = [*builder().start()]
    b = builder()
    events = b.start()
    for item in [ToolCallDelta(0, id="call_a", name="a", arguments='{"x":'),
                 ToolCallDelta(1, id="call_b", name="b", arguments="{}"),
                 ToolCallDelta(0, arguments="1}"), Finish("tool_calls", USAGE)]:
        events += b.feed(item)
    for event in events:
        validate_event(event)
    final = sdk_accumulate(events)
    assert [(o.call_id, o.arguments) for o in final.output] == [("call_a", '{"x":1}'), ("call_b", "{}")]


# -- status transitions: the builder is the only writer, and illegal moves raise -----------------

def finished(reason: str = "stop") -> ResponseBuilder:
    b = builder()
    b.start()
    b.feed(TextDelta("x"))
    b.feed(Finish(reason, USAGE))
    return b


def test_background_lifecycle_queued_then_in_progress_then_completed() -> None:
    b = builder()
    queued = b.queue()
    assert (queued["type"], queued["sequence_number"], queued["response"]["status"]) == ("response.queued", 0, "queued")
    assert b.status == "queued" and b.active
    created, progress = b.start()
    assert created["response"]["status"] == progress["response"]["status"] == b.status == "in_progress"
    assert [created["sequence_number"], progress["sequence_number"]] == [1, 2]
    b.feed(Finish("stop", USAGE))
    assert b.status == "completed" and not b.active


@pytest.mark.parametrize("move", ["start", "queue", "fail", "cancel", "finish"])
def test_a_finished_response_cannot_move_again(move: str) -> None:
    b = finished()
    calls = {"start": b.start, "queue": b.queue, "fail": lambda: b.fail(BackendError("late")),
             "cancel": b.cancel, "finish": lambda: b.feed(Finish("stop", USAGE))}
    with pytest.raises(IllegalTransition):
        calls[move]()
    assert b.status == "completed" and b.response["error"] is None


def test_start_twice_and_queue_after_start_raise() -> None:
    b = builder()
    b.start()
    with pytest.raises(IllegalTransition):
        b.start()
    with pytest.raises(IllegalTransition):
        b.queue()
    assert b.status == "in_progress" and b.sequence == 2


def test_a_queued_response_cannot_finish_without_starting() -> None:
    b = builder()
    b.queue()
    with pytest.raises(IllegalTransition):
        b.feed(Finish("stop", USAGE))
    assert b.status == "queued"


def test_failing_before_the_start_still_opens_with_response_created() -> None:
    b = builder()
    b.queue()
    events = b.fail(InvalidRequestError("too long", code="context_length_exceeded"))
    assert [e["type"] for e in events] == ["response.created", "response.failed"]
    assert events[0]["response"]["status"] == "queued"  # the snapshot as it was when created
    assert events[1]["response"]["error"] == {"code": "invalid_prompt", "message": "too long"}
    assert [e["sequence_number"] for e in events] == [1, 2] and b.status == "failed"


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_unkept_turns_a_finished_response_failed(reason: str) -> None:
    b = finished(reason)
    event = b.unkept(ShoalError("could not be stored"))
    assert event["type"] == "response.failed" and event["response"]["status"] == b.status == "failed"
    assert event["response"]["error"] == {"code": "server_error", "message": "could not be stored"}
    assert b.response["choices"][0]["finish_reason"] == "error"


def test_unkept_is_only_for_a_finished_response() -> None:
    b = builder()
    b.start()
    with pytest.raises(IllegalTransition):
        b.unkept(ShoalError("nope"))
    assert b.status == "in_progress"


def test_cancel_is_an_error_event_and_the_cancelled_status() -> None:
    b = builder()
    b.start()
    b.feed(TextDelta("partial"))
    event = b.cancel()
    assert event == {"type": "error", "sequence_number": b.sequence - 1, "code": "response_cancelled",
                     "message": "The response was cancelled.", "param": None}
    assert b.status == "cancelled" and not b.active
    with pytest.raises(IllegalTransition):
        b.cancel()


def test_abort_failed_elsewhere_from_queued() -> None:
    b = builder()
    b.queue()
    event = b.abort("failed", "server_error", "The response was failed while it ran.")
    assert event["code"] == "server_error" and b.status == "failed"


def test_status_has_no_setter() -> None:
    with pytest.raises(AttributeError):
        builder().status = "completed"  # type: ignore[misc]
