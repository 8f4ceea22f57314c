"""Chat completions with tools, structured outputs, reasoning and logprobs, on a scripted backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from shoal.core.types import Finish, NamedTool, ReasoningDelta, ResponseFormat, TextDelta, ToolCallDelta, Usage
from tests.frames import data_payloads
from tests.scripted import ScriptedBackend, make_app

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
BASE = {"model": "test-model", "messages": [{"role": "user", "content": "Weather in Paris and time?"}],
        "tools": [WEATHER, TIME]}
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
    return client.post("/v1/chat/completions", json={**BASE, **fields})


def error(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    return resp.json()["error"]  # type: ignore[no-any-return]


def fold_stream(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """A streamed completion folded back into the non-streamed message shape."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    calls: dict[int, dict[str, Any]] = {}
    text = reasoning = ""
    finish = None
    for c in chunks:
        for choice in c["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                entry = calls.setdefault(call["index"], {"id": None, "type": "function",
                                                         "function": {"name": None, "arguments": ""}})
                if "id" in call:
                    assert entry["id"] is None, "id sent twice"
                    entry["id"] = call["id"]
                if "name" in call["function"]:
                    assert entry["function"]["name"] is None, "name sent twice"
                    entry["function"]["name"] = call["function"]["name"]
                entry["function"]["arguments"] += call["function"]["arguments"]
            finish = choice["finish_reason"] or finish
    message["content"] = text or None
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"message": message, "finish_reason": finish}


# -- results ------------------------------------------------------------------------

def test_tool_calls_non_streamed(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*CALLS)
    body = post(client).json()
    ChatCompletion.model_validate(body)
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant", "content": None, "refusal": None, "reasoning_content": "Need both.",
        "tool_calls": [{"id": "call_a", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                       {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}


def test_tool_calls_streamed_exact_chunks_and_equal_to_non_streamed(client: TestClient,
                                                                     backend: ScriptedBackend) -> None:
    backend.add(*CALLS)
    backend.add(*CALLS)
    whole = post(client).json()["choices"][0]
    raw = post(client, stream=True).content
    payloads = data_payloads(raw)
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Need "},
        {"reasoning_content": "both."},
        {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                         "function": {"name": "get_time", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 8 + ["tool_calls"]
    assert fold_stream(chunks) == {"message": whole["message"], "finish_reason": whole["finish_reason"]}


def test_repeated_name_is_not_sent_twice(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(ToolCallDelta(0, id="c", name="get_time"), ToolCallDelta(0, name="get_time"),
                ToolCallDelta(0, arguments="{}"), Finish("tool_calls", USAGE))
    chunks = data_payloads(post(client, stream=True).content)[:-1]
    assert fold_stream(chunks)["message"]["tool_calls"] == [
        {"id": "c", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]


# -- what reaches the backend -------------------------------------------------------------

@pytest.mark.parametrize(("choice", "expected"), [
    (None, "auto"), ("auto", "auto"), ("none", "none"), ("required", "required"),
    ({"type": "function", "function": {"name": "get_time"}}, NamedTool("get_time")),
])
def test_tool_choice_modes(client: TestClient, backend: ScriptedBackend, choice: Any, expected: Any) -> None:
    fields = {} if choice is None else {"tool_choice": choice}
    assert post(client, **fields, parallel_tool_calls=False).status_code == 200
    request = backend.requests[-1]
    assert request.tool_choice == expected
    assert request.parallel_tool_calls is False
    assert [t.name for t in request.tools] == ["get_weather", "get_time"]


def test_named_choice_of_an_unknown_tool_is_a_400(client: TestClient, backend: ScriptedBackend) -> None:
    err = error(post(client, tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert "nope" in err["message"] and err["param"] == "tool_choice"


def test_invalid_tool_parameters_schema_is_a_400_naming_it(client: TestClient, backend: ScriptedBackend) -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                        "properties": {"a": {"type": "strin"}}}}}
    err = error(post(client, tools=[bad]))
    assert err["message"].startswith("Invalid schema for function 'f':") and "properties.a.type" in err["message"]
    assert err["param"] == "tools[0].parameters"


def test_response_format_json_object_and_schema(client: TestClient, backend: ScriptedBackend) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    post(client, response_format={"type": "json_object"})
    assert backend.requests[-1].response_format == ResponseFormat("json_object")
    post(client, response_format={"type": "json_schema",
                                  "json_schema": {"name": "count", "strict": True, "schema": schema}})
    assert backend.requests[-1].response_format == ResponseFormat("json_schema", "count", schema, True)
    post(client, response_format={"type": "text"})
    assert backend.requests[-1].response_format is None


@pytest.mark.parametrize(("fmt", "needle"), [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}},
     "Invalid schema for response_format 'x': "),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": "a"}}},
     "Invalid schema for response_format 'x': 'a' is not of type 'array' (at 'required')"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format 'x' has no 'schema'"),
    ({"type": "json_schema", "json_schema": {"name": "bad name", "schema": {}}}, "response_format.json_schema.name"),
    ({"type": "xml"}, "response_format"),
])
def test_invalid_response_format_is_a_400_naming_the_problem(client: TestClient, backend: ScriptedBackend,
                                                              fmt: dict[str, Any], needle: str) -> None:
    assert needle in error(post(client, response_format=fmt))["message"]


def test_reasoning_effort_passed_on_and_checked(client: TestClient, backend: ScriptedBackend) -> None:
    post(client, reasoning_effort="low")
    assert backend.requests[-1].reasoning_effort == "low"
    assert "reasoning_effort" in error(post(client, reasoning_effort="extreme"))["message"]


@pytest.mark.parametrize("top", [0, 20])
def test_top_logprobs_0_to_20(client: TestClient, backend: ScriptedBackend, top: int) -> None:
    assert post(client, logprobs=True, top_logprobs=top).status_code == 200
    assert backend.requests[-1].sampling.top_logprobs == top and backend.requests[-1].sampling.logprobs


def test_top_logprobs_over_20_is_a_400(client: TestClient, backend: ScriptedBackend) -> None:
    err = error(post(client, logprobs=True, top_logprobs=21))
    assert err["param"] == "top_logprobs" and "20" in err["message"]


def test_round_trip_history_reaches_the_backend(client: TestClient, backend: ScriptedBackend) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "reasoning_content": "use the tool",
         "tool_calls": [{"id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    ]
    backend.add(TextDelta("Sunny."), Finish("stop", USAGE))
    body = post(client, messages=messages).json()
    assert body["choices"][0]["message"]["content"] == "Sunny."
    history = backend.requests[-1].messages
    assert history[1].tool_calls[0].name == "get_weather" and history[1].reasoning == "use the tool"
    assert history[2].role == "tool" and history[2].tool_call_id == "call_a"
