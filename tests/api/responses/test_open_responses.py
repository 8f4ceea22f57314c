"""Every Response object and stream event validates against the Open Responses schema (scripted backend).

Plain, streamed, with a system prompt, with tool calls (streamed and whole), multi-turn by messages
and by ``previous_response_id``, and cut by ``max_output_tokens``; each created response is also
retrieved and validated again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoal.core.types import Finish, TextDelta, ToolCallDelta, Usage
from tests.api.responses.open_responses import validate_events, validate_response
from tests.frames import split_frames
from tests.scripted import ScriptedBackend, make_app, text_script

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = [ToolCallDelta(0, id="call_w", name="get_weather"), ToolCallDelta(0, arguments='{"city":'),
        ToolCallDelta(0, arguments='"Paris"}'), Finish("tool_calls", Usage(20, 9))]
BACKEND = ScriptedBackend()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_app(BACKEND, max_queue=0) as c:
        yield c


@pytest.fixture
def backend() -> ScriptedBackend:
    return BACKEND.reset()


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    """POST a non-streamed response; validate it, and validate it again as retrieved."""
    resp = client.post("/v1/responses", json={"model": "test-model", **body})
    assert resp.status_code == 200, resp.text
    created = resp.json()
    validate_response(created)
    stored = client.get(f"/v1/responses/{created['id']}")
    assert stored.status_code == 200, stored.text
    validate_response(stored.json())
    return created  # type: ignore[no-any-return]


def stream(client: TestClient, **body: Any) -> list[dict[str, Any]]:
    """POST a streamed response; validate every event, and the stored response."""
    resp = client.post("/v1/responses", json={"model": "test-model", "stream": True, **body})
    assert resp.status_code == 200, resp.text
    events = [json.loads(f["data"]) for f in split_frames(resp.content) if "data" in f]
    validate_events(events)
    # A streamed response is stored just after its stream ends: wait for it (bounded).
    for _ in range(50):
        stored = client.get(f"/v1/responses/{events[0]['response']['id']}")
        if stored.status_code == 200:
            break
        time.sleep(0.05)
    assert stored.status_code == 200, stored.text
    validate_response(stored.json())
    return events


def test_plain(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*text_script("Paris", " is the capital."))
    body = create(client, input="Capital of France?")
    assert body["output"][0]["content"][0]["text"] == "Paris is the capital."


def test_streamed(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*text_script("Hel", "lo"))
    events = stream(client, input="Hi")
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Hello"


def test_system_prompt(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*text_script("Arr."))
    backend.add(*text_script("Arr."))
    messages = [{"role": "system", "content": "Talk like a pirate."}, {"role": "developer", "content": "Be short."},
                {"role": "user", "content": "Hi"}]
    create(client, instructions="You are helpful.", input=messages)
    stream(client, instructions="You are helpful.", input=messages)
    assert [m.role for m in backend.requests[-1].messages] == ["system", "system", "developer", "user"]


def test_tool_call_whole_and_streamed(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*CALL)
    backend.add(*CALL)
    body = create(client, input="Weather in Paris?", tools=[WEATHER])
    assert [(o["type"], o["status"]) for o in body["output"]] == [("function_call", "completed")]
    events = stream(client, input="Weather in Paris?", tools=[WEATHER], tool_choice="required")
    assert events[-1]["response"]["output"][0]["arguments"] == '{"city":"Paris"}'


def test_multi_turn_by_messages(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*text_script("It is sunny."))
    backend.add(*text_script("It is sunny."))
    turn = [{"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_w", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_w", "output": "sunny"},
            {"role": "assistant", "content": "It is sunny."}, {"role": "user", "content": "And tomorrow?"}]
    create(client, input=turn, tools=[WEATHER])
    stream(client, input=turn, tools=[WEATHER])


def test_multi_turn_by_previous_response_id(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*CALL)
    first = create(client, input="Weather in Paris?", tools=[WEATHER])
    backend.add(*text_script("Sunny."))
    second = create(client, previous_response_id=first["id"], tools=[WEATHER],
                    input=[{"type": "function_call_output", "call_id": "call_w", "output": "sunny"}])
    assert second["previous_response_id"] == first["id"]
    backend.add(*text_script("Rain."))
    events = stream(client, previous_response_id=second["id"], input="And tomorrow?")
    assert events[-1]["response"]["previous_response_id"] == second["id"]
    assert [m.role for m in backend.requests[-1].messages] == ["user", "assistant", "tool", "assistant", "user"]


def test_incomplete_marks_the_last_message_incomplete(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(TextDelta("The answer is"), Finish("length", Usage(5, 3)))
    body = create(client, input="Long story", max_output_tokens=3)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][-1]["status"] == "incomplete"
    backend.add(TextDelta("The answer is"), Finish("length", Usage(5, 3)))
    events = stream(client, input="Long story", max_output_tokens=3)
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert done[-1]["item"]["status"] == "incomplete"
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["output"][-1]["status"] == "incomplete"


def test_spec_fields_are_echoed_and_honoured(client: TestClient, backend: ScriptedBackend) -> None:
    body = create(client, input="Hi")
    assert {k: body[k] for k in ("presence_penalty", "frequency_penalty", "max_tool_calls", "service_tier",
                                 "safety_identifier", "prompt_cache_key")} == {
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "max_tool_calls": None, "service_tier": "default",
        "safety_identifier": None, "prompt_cache_key": None}
    fields = {"presence_penalty": 0.5, "frequency_penalty": -0.25, "max_tool_calls": 3, "service_tier": "auto",
              "safety_identifier": "user-42", "prompt_cache_key": "thread-7"}
    body = create(client, input="Hi", **fields)
    assert {k: body[k] for k in fields} == {**fields, "service_tier": "default"}
    request = backend.requests[-1]
    assert (request.sampling.presence_penalty, request.sampling.frequency_penalty) == (0.5, -0.25)
    assert request.prompt_cache_key == "thread-7"


@pytest.mark.parametrize("field,value", [("presence_penalty", 2.5), ("frequency_penalty", -3),
                                         ("max_tool_calls", -1), ("service_tier", "gold"),
                                         ("safety_identifier", "x" * 65)])
def test_spec_fields_out_of_range_are_a_400(client: TestClient, backend: ScriptedBackend, field: str,
                                            value: Any) -> None:
    resp = client.post("/v1/responses", json={"model": "test-model", "input": "Hi", field: value})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == field


def test_max_tool_calls_bounds_the_calls(client: TestClient, backend: ScriptedBackend) -> None:
    two = [ToolCallDelta(0, id="a", name="get_weather", arguments='{"city":"Paris"}'),
           ToolCallDelta(1, id="b", name="get_weather", arguments='{"city":"Rome"}'), Finish("tool_calls", Usage(9, 9))]
    backend.add(*two)
    body = create(client, input="Paris and Rome?", tools=[WEATHER], max_tool_calls=1)
    assert [o["call_id"] for o in body["output"]] == ["a"]
    assert backend.requests[-1].parallel_tool_calls is False
    backend.add(*two)
    events = stream(client, input="Paris and Rome?", tools=[WEATHER], max_tool_calls=1)
    assert [e["item"]["call_id"] for e in events if e["type"] == "response.output_item.added"] == ["a"]
    create(client, input="Paris?", tools=[WEATHER], max_tool_calls=0)
    assert backend.requests[-1].tool_choice == "none"
