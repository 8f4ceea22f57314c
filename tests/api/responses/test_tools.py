"""Responses with tools, structured outputs, reasoning and logprobs, on a scripted backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoal.core.types import Finish, NamedTool, ReasoningDelta, ResponseFormat, TextDelta, ToolCallDelta, Usage
from tests.api.responses.sdk import sdk_accumulate, validate_event
from tests.frames import split_frames
from tests.scripted import ScriptedBackend, make_app

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME_CHAT_FORM = {"type": "function", "function": {"name": "get_time",
                                                   "parameters": {"type": "object", "properties": {}}}}
BASE = {"model": "test-model", "input": "Weather in Paris and the time?", "tools": [WEATHER, TIME_CHAT_FORM]}
USAGE = Usage(20, 9, reasoning_tokens=3)
CALLS = [ReasoningDelta("Need "), ReasoningDelta("both."),
         ToolCallDelta(0, id="call_a", name="get_weather"), ToolCallDelta(0, arguments='{"city":'),
         ToolCallDelta(0, arguments='"Paris"}'),
         ToolCallDelta(1, id="call_b", name="get_time"), ToolCallDelta(1, arguments="{}"),
         Finish("tool_calls", USAGE)]

BACKEND = ScriptedBackend()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_app(BACKEND, max_queue=0) as c:
        yield c


@pytest.fixture
def backend() -> ScriptedBackend:
    return BACKEND.reset()


def post(client: TestClient, **fields: Any) -> Any:
    return client.post("/v1/responses", json={**BASE, **fields})


def stream_events(client: TestClient, **fields: Any) -> list[dict[str, Any]]:
    resp = post(client, stream=True, **fields)
    assert resp.status_code == 200, resp.text
    events = [json.loads(f["data"]) for f in split_frames(resp.content) if "data" in f]
    for event in events:
        validate_event(event)
    return events


def error(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    return resp.json()["error"]  # type: ignore[no-any-return]


def comparable(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "id"} for item in output]


# -- function calls --------------------------------------------------------------------

def test_function_calls_exact_event_order(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*CALLS)
    events = stream_events(client)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [(i["type"], i.get("call_id"), i.get("name")) for i in added] == [
        ("reasoning", None, None), ("function_call", "call_a", "get_weather"), ("function_call", "call_b", "get_time")]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in done] == [("get_weather", '{"city":"Paris"}'), ("get_time", "{}")]
    final = sdk_accumulate(events)
    assert [o.type for o in final.output] == ["reasoning", "function_call", "function_call"]
    assert final.output[0].content[0].type == "reasoning_text"
    assert final.usage.output_tokens_details.reasoning_tokens == 3


def test_streamed_equals_non_streamed(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*CALLS)
    backend.add(*CALLS)
    whole = post(client).json()
    streamed = stream_events(client)[-1]["response"]
    assert comparable(whole["output"]) == comparable(streamed["output"])
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    calls = [o for o in whole["output"] if o["type"] == "function_call"]
    assert [(c["call_id"], c["name"], c["arguments"], c["status"]) for c in calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}', "completed"), ("call_b", "get_time", "{}", "completed")]


@pytest.mark.parametrize(("choice", "expected"), [
    (None, "auto"), ("none", "none"), ("auto", "auto"), ("required", "required"),
    ({"type": "function", "name": "get_time"}, NamedTool("get_time")),
    ({"type": "function", "function": {"name": "get_weather"}}, NamedTool("get_weather")),
])
def test_tool_choice_forms(client: TestClient, backend: ScriptedBackend, choice: Any, expected: Any) -> None:
    fields = {} if choice is None else {"tool_choice": choice}
    resp = post(client, parallel_tool_calls=False, **fields)
    assert resp.status_code == 200, resp.text
    request = backend.requests[-1]
    assert request.tool_choice == expected and request.parallel_tool_calls is False
    assert [t.name for t in request.tools] == ["get_weather", "get_time"]
    echo = resp.json()["tool_choice"]
    assert echo == (choice if isinstance(choice, str) else "auto" if choice is None
                    else {"type": "function", "name": expected.name})
    assert [t["name"] for t in resp.json()["tools"]] == ["get_weather", "get_time"]


def test_round_trip_stateless_with_reasoning_and_call_items(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*CALLS)
    first = post(client).json()
    backend.add(TextDelta("Sunny, 10:00."), Finish("stop", USAGE))
    outputs = [{"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
               {"type": "function_call_output", "call_id": "call_b", "output": "10:00"}]
    second = post(client, input=[{"role": "user", "content": "Weather in Paris and the time?"},
                                 *first["output"], *outputs])
    assert second.status_code == 200, second.text
    assert second.json()["output"][0]["content"][0]["text"] == "Sunny, 10:00."
    history = backend.requests[-1].messages
    assert [m.role for m in history] == ["user", "assistant", "tool", "tool"]
    assert history[1].reasoning == "Need both." and [c.id for c in history[1].tool_calls] == ["call_a", "call_b"]


def test_round_trip_through_previous_response_id(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*CALLS)
    first = post(client).json()
    backend.add(TextDelta("Done."), Finish("stop", USAGE))
    second = post(client, previous_response_id=first["id"],
                  input=[{"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
                         {"type": "function_call_output", "call_id": "call_b", "output": "10:00"}])
    assert second.status_code == 200, second.text
    history = backend.requests[-1].messages
    assert [m.role for m in history] == ["user", "assistant", "tool", "tool"]
    assert history[1].tool_calls[0].arguments == '{"city":"Paris"}'


# -- structured outputs, reasoning, logprobs ------------------------------------------------

def test_text_format_json_schema_is_passed_on_and_echoed(client: TestClient, backend: ScriptedBackend) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "name": "count", "schema": schema, "strict": True}
    body = post(client, text={"format": fmt}).json()
    assert backend.requests[-1].response_format == ResponseFormat("json_schema", "count", schema, True)
    assert body["text"]["format"] == {**fmt, "description": None}
    post(client, text={"format": {"type": "json_object"}})
    assert backend.requests[-1].response_format == ResponseFormat("json_object")
    assert post(client).json()["text"] == {"format": {"type": "text"}}


@pytest.mark.parametrize(("fmt", "needle"), [
    ({"type": "json_schema", "name": "x", "schema": {"type": "objekt"}}, "Invalid schema for response_format 'x': "),
    ({"type": "json_schema", "name": "x", "schema": {"properties": {"a": {"minimum": "0"}}}},
     "(at 'properties.a.minimum')"),
    ({"type": "json_schema", "schema": {}}, "needs a 'name' and a 'schema'"),
])
def test_invalid_text_format_is_a_400(client: TestClient, backend: ScriptedBackend, fmt: Any, needle: str) -> None:
    assert needle in error(post(client, text={"format": fmt}))["message"]


def test_reasoning_effort_is_passed_on(client: TestClient, backend: ScriptedBackend) -> None:
    body = post(client, reasoning={"effort": "high"}).json()
    assert backend.requests[-1].reasoning_effort == "high"
    assert body["reasoning"]["effort"] == "high"
    assert "reasoning.effort" in error(post(client, reasoning={"effort": "max"}))["message"]


def test_reasoning_item_first_and_encrypted_round_trip(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(ReasoningDelta("Think."), TextDelta("Answer."), Finish("stop", USAGE))
    body = post(client, include=["reasoning.encrypted_content"]).json()
    assert [o["type"] for o in body["output"]] == ["reasoning", "message"]
    reasoning = body["output"][0]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Think."}]
    sealed = {"type": "reasoning", "id": reasoning["id"], "summary": [],
              "encrypted_content": reasoning["encrypted_content"]}
    post(client, input=[{"role": "user", "content": "q"}, sealed,
                        {"role": "assistant", "content": "Answer."}, {"role": "user", "content": "more"}])
    assert backend.requests[-1].messages[1].reasoning == "Think."


def test_logprobs_include_and_top_logprobs_bounds(client: TestClient, backend: ScriptedBackend) -> None:
    post(client, include=["message.output_text.logprobs"], top_logprobs=20)
    sampling = backend.requests[-1].sampling
    assert sampling.logprobs and sampling.top_logprobs == 20
    err = error(post(client, include=["message.output_text.logprobs"], top_logprobs=21))
    assert err["param"] == "top_logprobs" and "20" in err["message"]


def test_web_search_without_a_provider_is_left_out_unless_forced(client: TestClient, backend: ScriptedBackend,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    for kind in ("web_search", "web_search_2025_08_26"):
        resp = post(client, tools=[WEATHER, {"type": kind}])
        assert resp.status_code == 200, resp.text
        assert [t.name for t in backend.requests[-1].tools] == ["get_weather"]
        assert resp.json()["tools"][1] == {"type": kind}  # echoed as sent, as OpenAI does
    assert "left out tool(s) this server cannot run: web_search" in caplog.text
    err = error(post(client, tools=[{"type": "web_search"}], tool_choice={"type": "web_search"}))
    assert "no search provider" in err["message"] and "--web-search-url" in err["message"]
    assert err["code"] == "web_search_unavailable" and err["param"] == "tool_choice"
