"""Schema caps and checks shared by both front-ends (shoal.api.formats), as functions and over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoal.api import formats
from shoal.api.formats import LIMITS, SchemaLimits, check_schema_sizes, check_tool_choice, validate_schemas
from shoal.core.types import NamedTool, ToolSpec
from shoal.errors import InvalidRequestError
from tests.scripted import ScriptedBackend, make_app

SMALL = SchemaLimits(schema_bytes=2000, branches=10, properties=8, depth=3, required_tools=2)


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def too_big(schemas: list[tuple[Any, str]], limits: SchemaLimits = SMALL) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        check_schema_sizes([(schema, param, True) for schema, param in schemas], limits)
    assert info.value.status_code == 400 and info.value.code == "schema_too_large"
    return info.value


@pytest.mark.parametrize(("schema", "words"), [
    (obj(x={"enum": list(range(11))}), "at most 10 anyOf/oneOf/enum branches"),
    (obj(x={"anyOf": [{"type": "string"}] * 6}, y={"oneOf": [{"type": "integer"}] * 5}), "at most 10 anyOf"),
    (obj(**{f"p{i}": {"type": "string"} for i in range(9)}), "at most 8 object properties"),
    (obj(a=obj(b=obj(c={"type": "string"}))), "at most 3 levels"),
    (obj(a={"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {}}}}), "at most 3 levels"),
    ({"$defs": {"d": obj(**{f"p{i}": {} for i in range(9)})}, "$ref": "#/$defs/d"}, "at most 8 object properties"),
    (obj(x={"type": "string", "description": "x" * 3000}), "at most 2,000 bytes"),
])
def test_each_cap_is_a_400_naming_the_field_and_the_limit(schema: dict[str, Any], words: str) -> None:
    error = too_big([(schema, "text.format.schema")])
    assert error.param == "text.format.schema"
    assert words in error.message


def test_the_caps_sum_over_the_request_and_name_the_schema_that_crosses() -> None:
    five = obj(x={"enum": list(range(5))})
    check_schema_sizes([(five, "tools[0].parameters", True), (five, "tools[1].parameters", True)], SMALL)
    error = too_big([(five, "tools[0].parameters"), (five, "tools[1].parameters"), (five, "tools[2].parameters")])
    assert error.param == "tools[2].parameters"


def test_a_hostile_depth_is_refused_without_recursion() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        deep = {"type": "array", "items": deep}
    with pytest.raises(InvalidRequestError):
        check_schema_sizes([(deep, "p", False)], SchemaLimits(schema_bytes=10**9))
    wrapped: dict[str, Any] = {"type": "string"}
    for _ in range(100):  # wrappers add no data depth, but are levels all the same
        wrapped = {"allOf": [wrapped]}
    assert "levels" in too_big([(wrapped, "p")], SchemaLimits(schema_bytes=10**9)).message


def agent_tools() -> list[dict[str, Any]]:
    """A realistic agent's tools: 40 functions, a few enums, nested options, long descriptions."""
    tools = []
    for _ in range(40):
        props = {f"arg_{i}": {"type": "string", "description": "What this argument means. " * 4} for i in range(6)}
        props["mode"] = {"type": "string", "enum": ["fast", "careful", "dry_run", "verbose"]}
        props["options"] = obj(recursive={"type": "boolean"}, depth={"type": "integer"},
                               filters={"type": "array", "items": obj(key={"type": "string"},
                                                                      op={"enum": ["eq", "ne", "lt", "gt"]})})
        tools.append({"type": "object", "properties": props, "required": ["arg_0"]})
    return tools


def test_a_realistic_agent_schema_set_is_admitted() -> None:
    tools = agent_tools()
    check_schema_sizes([(s, f"tools[{i}].parameters", False) for i, s in enumerate(tools)])  # tool_choice auto
    # A forced call over two of them (a grammar): still admitted.
    shape = check_schema_sizes([(s, f"tools[{i}].parameters", i < 2) for i, s in enumerate(tools)])
    assert 0 < shape.branches <= LIMITS.branches and 0 < shape.properties <= LIMITS.properties


def test_only_constrained_schemas_count_branches_and_properties() -> None:
    wide = obj(x={"enum": list(range(50))})
    check_schema_sizes([(wide, "tools[0].parameters", False)], SMALL)  # tool_choice auto: no grammar
    assert too_big([(wide, "tools[0].parameters")]).param == "tools[0].parameters"


def test_required_over_too_many_tools_is_a_400() -> None:
    tools = [ToolSpec(f"t{i}") for i in range(3)]
    with pytest.raises(InvalidRequestError) as info:
        check_tool_choice("required", tools, SMALL)
    assert info.value.param == "tool_choice" and "at most 2 tools" in info.value.message
    assert check_tool_choice(NamedTool("t2"), tools, SMALL) == NamedTool("t2")  # one tool: no anyOf
    assert check_tool_choice("auto", tools, SMALL) == "auto"


def test_schema_validity_is_checked_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def slow_check(schema: Any, *, what: str, param: str) -> None:
        threads.append(threading.current_thread())
        time.sleep(0.05)

    monkeypatch.setattr(formats, "check_schema", slow_check)

    async def main() -> float:
        ticks: list[float] = []

        async def ticker() -> None:
            for _ in range(20):
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        await asyncio.gather(validate_schemas([({}, "f", "tools[0].parameters")] * 4), ticker())
        return max(b - a for a, b in zip(ticks, ticks[1:]))

    worst_gap = asyncio.run(main())
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert worst_gap < 0.15  # 0.2 s of checking, none of it on the loop


# -- over HTTP ------------------------------------------------------------------
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
WIDE = {"type": "object", "properties": {"x": {"enum": [f"v{i}" for i in range(LIMITS.branches + 1)]}}}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_app(ScriptedBackend()) as c:
        yield c


def error(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    return resp.json()["error"]  # type: ignore[no-any-return]


def test_chat_response_format_over_the_caps(client: TestClient) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "wide", "schema": WIDE}}
    err = error(client.post("/v1/chat/completions", json={**CHAT, "response_format": fmt}))
    assert err["param"] == "response_format.json_schema.schema" and err["code"] == "schema_too_large"


def test_chat_tool_over_the_caps_is_named_by_index(client: TestClient) -> None:
    tools = [{"type": "function", "function": {"name": "a"}},
             {"type": "function", "function": {"name": "b", "parameters": WIDE}}]
    assert client.post("/v1/chat/completions", json={**CHAT, "tools": tools}).status_code == 200  # auto
    err = error(client.post("/v1/chat/completions", json={**CHAT, "tools": tools, "tool_choice": "required"}))
    assert err["param"] == "tools[1].parameters"
    named = {"type": "function", "function": {"name": "b"}}
    assert error(client.post("/v1/chat/completions", json={**CHAT, "tools": tools, "tool_choice": named}))[
        "param"] == "tools[1].parameters"


def test_responses_format_and_tools_over_the_caps(client: TestClient) -> None:
    body: dict[str, Any] = {"model": "test-model", "input": "hi",
                            "text": {"format": {"type": "json_schema", "name": "wide", "schema": WIDE}}}
    assert error(client.post("/v1/responses", json=body))["param"] == "text.format.schema"
    tools = [{"type": "function", "name": "a"}, {"type": "function", "name": "b", "parameters": WIDE}]
    forced = {**body, "text": None, "tools": tools, "tool_choice": "required"}
    assert error(client.post("/v1/responses", json=forced))["param"] == "tools[1].parameters"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_required_over_many_tools_over_http(client: TestClient, path: str) -> None:
    tools = [{"type": "function", "function": {"name": f"t{i}"}} for i in range(LIMITS.required_tools + 1)]
    base = CHAT if path.endswith("completions") else {"model": "test-model", "input": "hi"}
    err = error(client.post(path, json={**base, "tools": tools, "tool_choice": "required"}))
    assert err["param"] == "tool_choice" and err["code"] == "too_many_tools"


# -- text that cannot fit the context --------------------------------------------
def test_check_prompt_fits_names_the_biggest_field() -> None:
    formats.check_prompt_fits([("a", "x" * 100), ("b", "y" * 540)], 10)  # 640 = 10 x 64: could fit
    with pytest.raises(InvalidRequestError) as info:
        formats.check_prompt_fits([("a", "x" * 100), ("b", "y" * 541)], 10)
    assert info.value.param == "b" and info.value.code == "context_length_exceeded"
    formats.check_prompt_fits([("a", "x" * 10**6)], None)  # no known context: no bound


def test_huge_instructions_are_refused_before_the_engine() -> None:
    backend = ScriptedBackend()
    limit = 4096 * formats.CHARS_PER_TOKEN_BOUND  # the scripted model's context, in characters
    with make_app(backend) as client:
        resp = client.post("/v1/responses", json={"model": "test-model", "input": "hi",
                                                  "instructions": "x" * (limit + 1)})
        err = error(resp)
        assert err["param"] == "instructions" and err["code"] == "context_length_exceeded"
        messages = [{"role": "system", "content": "short"}, {"role": "user", "content": "y" * (limit + 1)}]
        err = error(client.post("/v1/chat/completions", json={"model": "test-model", "messages": messages}))
        assert err["param"] == "messages[1].content" and err["code"] == "context_length_exceeded"
        assert backend.requests == []
        ok = client.post("/v1/responses", json={"model": "test-model", "input": "hi", "instructions": "x" * (limit - 2)})
        assert ok.status_code == 200, ok.text
