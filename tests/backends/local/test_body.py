"""The llama.cpp request body: OpenAI's fields, plus what is llama.cpp's own."""

from __future__ import annotations

from shoal.backends.local.body import TOOL_RESULT_HINT, to_llama_body
from shoal.core.types import GenerationRequest, Message, NamedTool, ResponseFormat, SamplingParams, ToolCall, ToolSpec

WEATHER = ToolSpec("get_weather", "Weather of a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIME = ToolSpec("get_time")


def req(**kw) -> GenerationRequest:  # type: ignore[no-untyped-def]
    kw.setdefault("messages", (Message("user", "hi"),))
    return GenerationRequest(model="m", **kw)


def test_minimal_body_always_streams_with_usage_and_cache() -> None:
    body = to_llama_body(req())
    assert body == {
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
    }


def test_messages_developer_becomes_system_and_history_is_kept() -> None:
    body = to_llama_body(req(messages=(
        Message("developer", "be brief"),
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),),
                reasoning="need the tool"),
        Message("tool", "sunny", tool_call_id="call_1"),
    )))
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
         "reasoning_content": "need the tool"},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        {"role": "system", "content": TOOL_RESULT_HINT},  # ends with a tool result: answer from it
    ]


def test_sampling_fields() -> None:
    body = to_llama_body(req(sampling=SamplingParams(temperature=0.0, top_p=0.5, seed=3, stop=("a", "b"),
                                                     max_tokens=8, logprobs=True, top_logprobs=2)))
    assert body["temperature"] == 0.0  # zero is sent, not dropped
    assert body["top_p"] == 0.5
    assert body["seed"] == 3
    assert body["stop"] == ["a", "b"]
    assert body["max_tokens"] == 8
    assert body["logprobs"] is True and body["top_logprobs"] == 2


def test_no_logprobs_by_default() -> None:
    body = to_llama_body(req(sampling=SamplingParams(max_tokens=None)))
    assert "logprobs" not in body and "max_tokens" not in body and "stop" not in body


def test_tools_auto() -> None:
    body = to_llama_body(req(tools=(WEATHER, TIME), parallel_tool_calls=False))
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                          "parameters": WEATHER.parameters}},
        {"type": "function", "function": {"name": "get_time", "description": "",
                                          "parameters": {"type": "object", "properties": {}}}},
    ]
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False


def test_named_tool_choice_is_a_schema_over_that_tool_alone() -> None:
    body = to_llama_body(req(tools=(WEATHER, TIME), tool_choice=NamedTool("get_time")))
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
    assert body["tool_choice"] == "none"  # llama.cpp refuses a schema beside tools it would parse itself
    assert body["json_schema"] == {
        "type": "object",
        "properties": {"name": {"type": "string", "const": "get_time"},
                       "arguments": {"type": "object", "properties": {}}},
        "required": ["name", "arguments"], "additionalProperties": False,
    }


def test_required_is_a_schema_over_every_tool() -> None:
    body = to_llama_body(req(tools=(WEATHER, TIME), tool_choice="required"))
    assert body["tool_choice"] == "none" and len(body["tools"]) == 2
    schema = body["json_schema"]
    assert schema["type"] == "array" and schema["minItems"] == 1
    assert [v["properties"]["name"]["const"] for v in schema["items"]["anyOf"]] == ["get_weather", "get_time"]
    assert schema["items"]["anyOf"][0]["properties"]["arguments"] == WEATHER.parameters
    single = to_llama_body(req(tools=(WEATHER,), tool_choice="required", parallel_tool_calls=False))["json_schema"]
    assert single["type"] == "object" and single["properties"]["name"]["const"] == "get_weather"


def test_none_sends_no_tools() -> None:
    body = to_llama_body(req(tools=(WEATHER,), tool_choice="none"))
    assert "tools" not in body and "tool_choice" not in body and "json_schema" not in body


def test_response_format_and_reasoning_effort_are_passed_on() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = to_llama_body(req(response_format=ResponseFormat("json_schema", "thing", schema, True)))
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "thing", "strict": True, "schema": schema}}
    assert to_llama_body(req(response_format=ResponseFormat("json_object")))["response_format"] == {
        "type": "json_object"}
    assert "response_format" not in to_llama_body(req(response_format=ResponseFormat()))
    assert to_llama_body(req(reasoning_effort="low"))["chat_template_kwargs"] == {"reasoning_effort": "low"}
    assert to_llama_body(req(reasoning_effort="none"))["chat_template_kwargs"] == {
        "reasoning_effort": "none", "enable_thinking": False}


def test_tool_result_hint_only_after_tool_results_and_can_be_off() -> None:
    ends_with_tool = req(messages=(Message("user", "q"), Message("tool", "r", tool_call_id="c")))
    assert to_llama_body(ends_with_tool)["messages"][-1] == {"role": "system", "content": TOOL_RESULT_HINT}
    assert to_llama_body(ends_with_tool, tool_result_hint=False)["messages"][-1]["role"] == "tool"
    assert to_llama_body(req())["messages"] == [{"role": "user", "content": "hi"}]
