"""Namespace, custom and built-in tools as agents (Codex CLI) send them, on a scripted backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoal.api.responses.tools import custom_arguments, custom_input
from shoal.core.types import Finish, NamedTool, ToolCallDelta, Usage
from tests.api.responses.sdk import sdk_accumulate, validate_event
from tests.frames import split_frames
from tests.scripted import ScriptedBackend, make_app

SPAWN = {"type": "function", "name": "spawn_agent", "description": "Start a sub-agent",
         "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}
AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [SPAWN]}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
EXEC = {"type": "function", "name": "exec_command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
HOSTED = [{"type": "web_search"}, {"type": "local_shell"}, {"type": "image_generation"},
          {"type": "mcp", "server_label": "x", "server_url": "https://mcp.invalid"},
          {"type": "file_search", "vector_store_ids": ["vs_1"]}, {"type": "computer_use_preview",
                                                                 "display_width": 1, "display_height": 1,
                                                                 "environment": "linux"}]
USAGE = Usage(30, 10)
BACKEND = ScriptedBackend()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_app(BACKEND, max_queue=0) as c:
        yield c


@pytest.fixture
def backend() -> ScriptedBackend:
    return BACKEND.reset()


def post(client: TestClient, **fields: Any) -> Any:
    return client.post("/v1/responses", json={"model": "test-model", "input": "go", **fields})


def stream(client: TestClient, **fields: Any) -> list[dict[str, Any]]:
    resp = post(client, stream=True, **fields)
    assert resp.status_code == 200, resp.text
    events = [json.loads(f["data"]) for f in split_frames(resp.content) if "data" in f]
    for event in events:
        validate_event(event)
    return events


def test_codex_like_request_is_accepted_and_its_tools_offered(client: TestClient, backend: ScriptedBackend,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    resp = post(client, tools=[EXEC, AGENTS, PATCH, *HOSTED], reasoning={"summary": "auto"}, store=False,
                include=["reasoning.encrypted_content"], prompt_cache_key="thread", client_metadata={"a": "b"})
    assert resp.status_code == 200, resp.text
    tools = {t.name: t for t in backend.requests[-1].tools}
    assert list(tools) == ["exec_command", "spawn_agent", "apply_patch"]
    assert tools["apply_patch"].parameters == {"type": "object", "properties": {"input": {
        "type": "string", "description": "The tool's input, as raw text."}}, "required": ["input"]}
    assert "start: /.+/" in (tools["apply_patch"].description or "")
    assert [t["type"] for t in resp.json()["tools"]] == ["function", "namespace", "custom",
                                                          *(t["type"] for t in HOSTED)]
    assert "left out tool(s) this server cannot run: web_search, local_shell, image_generation, mcp, " \
           "file_search, computer_use_preview" in caplog.text


def test_namespace_call_comes_back_with_its_namespace(client: TestClient, backend: ScriptedBackend) -> None:
    call = [ToolCallDelta(0, id="call_s", name="spawn_agent", arguments='{"task":"x"}'), Finish("tool_calls", USAGE)]
    backend.add(*call)
    item = post(client, tools=[AGENTS]).json()["output"][0]
    assert {k: item[k] for k in ("type", "name", "namespace", "arguments")} == {
        "type": "function_call", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": '{"task":"x"}'}
    backend.add(*call)
    events = stream(client, tools=[AGENTS])
    assert sdk_accumulate(events).output[0].namespace == "multi_agent_v1"


def test_custom_call_is_a_custom_tool_call_item_with_raw_input(client: TestClient, backend: ScriptedBackend) -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi \"there\"\n*** End Patch"
    arguments = json.dumps({"input": patch})
    script = [ToolCallDelta(0, id="call_p", name="apply_patch", arguments=arguments[:10]),
              ToolCallDelta(0, arguments=arguments[10:]), Finish("tool_calls", USAGE)]
    backend.add(*script)
    item = post(client, tools=[PATCH]).json()["output"][0]
    assert {k: item[k] for k in ("type", "call_id", "name", "input")} == {
        "type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": patch}
    backend.add(*script)
    events = stream(client, tools=[PATCH])
    kinds = [e["type"] for e in events]
    assert kinds[2:] == ["response.output_item.added", "response.custom_tool_call_input.delta",
                         "response.custom_tool_call_input.done", "response.output_item.done",
                         "response.completed"]
    final = sdk_accumulate(events)
    assert final.output[0].type == "custom_tool_call" and final.output[0].input == patch


def test_custom_call_and_output_are_accepted_as_input(client: TestClient, backend: ScriptedBackend) -> None:
    history = [{"role": "user", "content": "patch it"},
               {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "PATCH"},
               {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
               {"type": "function_call", "call_id": "call_s", "name": "spawn_agent", "namespace": "multi_agent_v1",
                "arguments": "{}"},
               {"type": "function_call_output", "call_id": "call_s", "output": "ok"}]
    assert post(client, tools=[PATCH, AGENTS], input=history).status_code == 200
    messages = backend.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert messages[1].tool_calls[0].arguments == custom_arguments("PATCH")
    assert (messages[2].content, messages[2].tool_call_id) == ("Done!", "call_p")


def test_custom_and_namespace_calls_continue_by_previous_response_id(client: TestClient,
                                                                     backend: ScriptedBackend) -> None:
    backend.add(ToolCallDelta(0, id="call_p", name="apply_patch", arguments='{"input":"P"}'),
                ToolCallDelta(1, id="call_s", name="spawn_agent", arguments="{}"), Finish("tool_calls", USAGE))
    first = post(client, tools=[PATCH, AGENTS]).json()
    post(client, tools=[PATCH, AGENTS], previous_response_id=first["id"],
         input=[{"type": "custom_tool_call_output", "call_id": "call_p", "output": "patched"},
                {"type": "function_call_output", "call_id": "call_s", "output": "spawned"}])
    calls = backend.requests[-1].messages[1].tool_calls
    assert [(c.name, c.arguments) for c in calls] == [("apply_patch", '{"input": "P"}'), ("spawn_agent", "{}")]


def test_tool_choice_forcing_a_custom_or_namespace_tool(client: TestClient, backend: ScriptedBackend) -> None:
    post(client, tools=[PATCH, AGENTS], tool_choice={"type": "custom", "name": "apply_patch"})
    assert backend.requests[-1].tool_choice == NamedTool("apply_patch")
    post(client, tools=[PATCH, AGENTS], tool_choice={"type": "function", "name": "spawn_agent"})
    assert backend.requests[-1].tool_choice == NamedTool("spawn_agent")


@pytest.mark.parametrize("kind", ["local_shell", "image_generation", "file_search"])
def test_forcing_a_tool_shoal_cannot_run_is_a_400(client: TestClient, backend: ScriptedBackend, kind: str) -> None:
    resp = post(client, tools=[{"type": kind}], tool_choice={"type": kind})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"] == "tool_choice" and kind in err["message"] and err["code"] == "tool_unavailable"
    assert backend.requests == []


def test_unknown_tool_type_and_bad_namespace_are_400(client: TestClient, backend: ScriptedBackend) -> None:
    assert post(client, tools=[{"type": "teleport"}]).status_code == 400
    bad = {**AGENTS, "tools": [{"type": "function", "name": "bad name"}]}
    assert post(client, tools=[bad]).status_code == 400
    assert post(client, tools=[AGENTS, SPAWN]).json()["error"]["message"].startswith("Duplicate tool name")


def test_custom_input_from_the_model_arguments() -> None:
    assert custom_input('{"input": "a\\nb"}') == "a\nb"
    assert custom_input("not json") == "not json"
    assert custom_input('"just a string"') == "just a string"
    assert custom_input('{"other": 1}') == '{"other": 1}'
    assert custom_input(custom_arguments("ünï \"q\"")) == "ünï \"q\""
