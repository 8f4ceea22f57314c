"""Numeric bounds and strict flags of the chat and Responses schemas: bad input is a 400 naming the field.

Before these bounds, an integer over 64 bits in ``max_tokens`` or ``seed`` reached the
engine (a 502), and ``"stream": "yes"`` was read as true.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from fastapi.testclient import TestClient

from shoal.protocol.chat import ChatMessage
from shoal.protocol.common import MAX_STOP_CHARS, MAX_TOOLS
from shoal.protocol.responses import InputMessage
from tests.scripted import ScriptedBackend, make_app

HUGE = 2**70
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "test-model", "input": "hi"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def tool(index: int) -> dict[str, Any]:
    return {"type": "function", "function": {"name": f"f{index}", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_app(ScriptedBackend()) as c:
        yield c


def refused(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(path, json=body)
    assert resp.status_code == 400, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


CHAT_BAD = [
    ("max_tokens", HUGE), ("max_completion_tokens", HUGE), ("max_tokens", 2**31), ("max_tokens", 0),
    ("max_tokens", "12"), ("seed", HUGE), ("seed", 2**63), ("seed", -(2**63) - 1), ("seed", "1"),
    ("stream", "yes"), ("stream", 1), ("logprobs", "true"), ("parallel_tool_calls", "no"),
    ("presence_penalty", 2.5), ("frequency_penalty", -2.01), ("presence_penalty", "1"),
    ("temperature", "0.5"), ("top_p", 1.5), ("top_logprobs", 21), ("n", 2), ("n", "1"),
    ("stop", "x" * (MAX_STOP_CHARS + 1)), ("stop", ["a", "y" * (MAX_STOP_CHARS + 1)]),
    ("logit_bias", {"50256": 101}), ("logit_bias", {"word": 1}),
    ("logit_bias", {str(i): 1 for i in range(301)}), ("tools", [TOOL] * (MAX_TOOLS + 1)),
    ("metadata", {f"k{i}": "v" for i in range(17)}),
]


@pytest.mark.parametrize(("field", "value"), CHAT_BAD, ids=lambda v: str(v)[:24])
def test_chat_refuses_out_of_range_and_loose_types(client: TestClient, field: str, value: Any) -> None:
    error = refused(client, "/v1/chat/completions", {**CHAT, field: value})
    assert error["param"] == field or error["param"].startswith(field + "."), error  # logit_bias.<token>


@pytest.mark.parametrize(("field", "value"), [
    ("max_output_tokens", HUGE), ("max_tokens", HUGE), ("seed", HUGE), ("stream", "yes"), ("store", "false"),
    ("background", 0), ("presence_penalty", 3), ("top_logprobs", 21), ("stop", "z" * (MAX_STOP_CHARS + 1)),
    ("tools", [TOOL] * (MAX_TOOLS + 1)),
], ids=lambda v: str(v)[:24])
def test_responses_refuses_out_of_range_and_loose_types(client: TestClient, field: str, value: Any) -> None:
    error = refused(client, "/v1/responses", {**RESPONSES, field: value})
    assert error["param"] == field


def test_nested_flags_are_strict(client: TestClient) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": "yes"}}
    assert refused(client, "/v1/chat/completions", body)["param"] == "stream_options.include_usage"


def test_too_many_tools_names_the_limit(client: TestClient) -> None:
    error = refused(client, "/v1/chat/completions", {**CHAT, "tools": [TOOL] * 20_000})
    assert f"at most {MAX_TOOLS} tools" in error["message"]


@pytest.mark.parametrize("fields", [
    {"max_tokens": 2**31 - 1, "seed": 2**63 - 1}, {"seed": -(2**63)}, {"presence_penalty": -2, "frequency_penalty": 2},
    {"temperature": 1, "top_p": 1}, {"stop": ["a" * MAX_STOP_CHARS, "b", "c", "d"]},
    {"logit_bias": {"50256": -100, "13": 100}}, {"tools": [tool(i) for i in range(MAX_TOOLS)]}, {"n": 1, "stream": False},
], ids=lambda v: ",".join(v))
def test_chat_accepts_the_edges(client: TestClient, fields: dict[str, Any]) -> None:
    resp = client.post("/v1/chat/completions", json={**CHAT, **fields})
    assert resp.status_code == 200, resp.text


def test_responses_accepts_the_edges(client: TestClient) -> None:
    body = {**RESPONSES, "max_output_tokens": 2**31 - 1, "seed": 2**63 - 1, "stream": False, "store": False,
            "tools": [{"type": "function", "name": f"f{i}"} for i in range(MAX_TOOLS)]}
    resp = client.post("/v1/responses", json=body)
    assert resp.status_code == 200, resp.text


# -- one message validator for chat messages and Responses input messages -------------------------------

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(("message", "why"), [
    ({"role": "tool", "content": "r"}, "with role 'tool' must have a 'tool_call_id'"),
    ({"role": "user"}, "with role 'user' must have 'content'"),
    ({"role": "user", "tool_calls": [CALL]}, "with role 'user' must have 'content'"),  # only assistants call
])
def test_chat_and_responses_messages_follow_the_same_rules(message: dict[str, Any], why: str) -> None:
    for schema, noun in ((ChatMessage, "messages"), (InputMessage, "input messages")):
        with pytest.raises(pydantic.ValidationError, match=f"{noun} {why}"):
            schema.model_validate(message)
    calls_only = {"role": "assistant", "tool_calls": [CALL]}
    assert ChatMessage.model_validate(calls_only).tool_calls and InputMessage.model_validate(calls_only).tool_calls
