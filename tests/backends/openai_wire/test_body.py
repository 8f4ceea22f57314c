"""The OpenAI request fields, and the three body builders that must agree on them.

The llama.cpp body (local engine), the chat-completions upstream's and the
Responses upstream's once disagreed on ``top_logprobs``, ``parallel_tool_calls``
and a tool's ``strict``; each decision is pinned here for all three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shoal.backends.local.body import to_llama_body
from shoal.backends.openai_compat import chat_body
from shoal.backends.openai_responses import responses_body
from shoal.backends.openai_wire.body import sampling_fields, tool_fields
from shoal.core.types import GenerationRequest, Message, NamedTool, ResponseFormat, SamplingParams, ToolSpec

WEATHER = ToolSpec("get_weather", "Weather of a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
STRICT = ToolSpec("get_time", parameters={"type": "object", "properties": {}, "additionalProperties": False},
                  strict=True)

Builder = Callable[[GenerationRequest], dict[str, Any]]
BUILDERS: dict[str, Builder] = {
    "llama.cpp": to_llama_body,
    "chat": lambda r: chat_body(r, "up"),
    "responses": lambda r: responses_body(r, "up"),
}
each_builder = pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())


def req(**kw: Any) -> GenerationRequest:
    return GenerationRequest(model="m", messages=(Message("user", "hi"),), **kw)


def logprobs_on(body: dict[str, Any]) -> bool:
    return body.get("logprobs") is True or body.get("include") == ["message.output_text.logprobs"]


def strict_of(tool: dict[str, Any]) -> Any:
    """A sent tool's ``strict`` (missing: None), nested (chat) or flat (Responses)."""
    return (tool.get("function") or tool).get("strict")


# -- top_logprobs: sent with logprobs and only then, 0 included --------------------------------

@each_builder
def test_top_logprobs_zero_is_sent_with_logprobs(build: Builder) -> None:
    # llama.cpp answers a missing top_logprobs with 20 alternatives; OpenAI with none. Zero must be said.
    body = build(req(sampling=SamplingParams(logprobs=True, top_logprobs=0)))
    assert logprobs_on(body) and body["top_logprobs"] == 0


@each_builder
def test_top_logprobs_is_passed_on(build: Builder) -> None:
    body = build(req(sampling=SamplingParams(logprobs=True, top_logprobs=3)))
    assert logprobs_on(body) and body["top_logprobs"] == 3


@each_builder
def test_top_logprobs_never_goes_without_logprobs(build: Builder) -> None:
    # Both OpenAI and llama.cpp refuse top_logprobs without logprobs.
    body = build(req(sampling=SamplingParams(logprobs=False, top_logprobs=3)))
    assert not logprobs_on(body) and "top_logprobs" not in body and "include" not in body


# -- parallel_tool_calls: only beside tools; False always said ------------------------------------

@each_builder
@pytest.mark.parametrize("parallel", [True, False])
def test_parallel_tool_calls_never_goes_without_tools(build: Builder, parallel: bool) -> None:
    assert "parallel_tool_calls" not in build(req(parallel_tool_calls=parallel))
    with_none = build(req(tools=(WEATHER,), tool_choice="none", parallel_tool_calls=parallel))
    assert "tools" in with_none or "parallel_tool_calls" not in with_none


@each_builder
@pytest.mark.parametrize("choice", ["auto", "required", NamedTool("get_weather")], ids=str)
def test_parallel_off_is_sent_with_every_tool_choice(build: Builder, choice: Any) -> None:
    body = build(req(tools=(WEATHER, STRICT), tool_choice=choice, parallel_tool_calls=False))
    assert body["tools"] and body["parallel_tool_calls"] is False


@each_builder
def test_parallel_on_is_never_contradicted(build: Builder) -> None:
    # Absent means OpenAI's default, on; the local engine says so explicitly (llama.cpp's default is off).
    body = build(req(tools=(WEATHER,), parallel_tool_calls=True))
    assert body.get("parallel_tool_calls", True) is True
    if build is to_llama_body:
        assert body["parallel_tool_calls"] is True


# -- strict: passed through when set ---------------------------------------------------------------

@each_builder
@pytest.mark.parametrize("choice", ["auto", "required"])
def test_strict_tool_is_sent_strict(build: Builder, choice: str) -> None:
    body = build(req(tools=(WEATHER, STRICT), tool_choice=choice))
    assert [strict_of(t) for t in body["tools"]][1] is True
    assert strict_of(body["tools"][0]) in (None, False)


def test_non_strict_is_said_only_where_strict_is_the_default() -> None:
    # Chat tools default to non-strict; Responses function tools default to strict.
    assert strict_of(chat_body(req(tools=(WEATHER,)), "up")["tools"][0]) is None
    assert strict_of(to_llama_body(req(tools=(WEATHER,)))["tools"][0]) is None
    assert strict_of(responses_body(req(tools=(WEATHER,)), "up")["tools"][0]) is False


# -- the shared functions themselves ------------------------------------------------------------------

def test_sampling_fields_leave_out_what_was_not_set() -> None:
    assert sampling_fields(req()) == {} and sampling_fields(req(), api="responses") == {}
    assert sampling_fields(req(response_format=ResponseFormat())) == {}


def test_sampling_fields_in_the_responses_names() -> None:
    request = req(sampling=SamplingParams(temperature=0.0, max_tokens=5, stop=("x",), logprobs=True),
                  response_format=ResponseFormat("json_schema", name="out", schema={"type": "object"}))
    assert sampling_fields(request) == {
        "temperature": 0.0, "max_tokens": 5, "stop": ["x"], "logprobs": True, "top_logprobs": 0,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "out", "strict": False, "schema": {"type": "object"}}}}
    assert sampling_fields(request, api="responses") == {
        "temperature": 0.0, "max_output_tokens": 5, "stop": ["x"], "include": ["message.output_text.logprobs"],
        "top_logprobs": 0,
        "text": {"format": {"type": "json_schema", "name": "out", "strict": False, "schema": {"type": "object"}}}}


def test_tool_fields_shapes() -> None:
    assert tool_fields((), "required", False) == {}
    assert tool_fields((STRICT,), NamedTool("get_time"), True) == {
        "tools": [{"type": "function", "function": {"name": "get_time", "description": "",
                                                    "parameters": STRICT.parameters, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}}}
    assert tool_fields((STRICT,), NamedTool("get_time"), True, api="responses", explicit_parallel=True) == {
        "tools": [{"type": "function", "name": "get_time", "description": "", "parameters": STRICT.parameters,
                   "strict": True}],
        "tool_choice": {"type": "function", "name": "get_time"}, "parallel_tool_calls": True}
