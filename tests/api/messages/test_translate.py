"""Messages translator: Anthropic wire requests → engine-neutral GenerationRequests."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shoal.api.messages.translate import to_generation
from shoal.core.types import ImageInput, Message, NamedTool, ToolCall
from shoal.errors import InvalidRequestError
from shoal.protocol.messages import CountTokensRequest, MessagesRequest

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAcCBlCwAAAABJRU5ErkJggg=="
TOOL = {"name": "get_weather", "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **fields}
    return MessagesRequest.model_validate(body)


def test_plain_text_with_sampling_and_metadata() -> None:
    req = to_generation(request(system="Be brief.", temperature=0.5, top_p=0.9, top_k=40,
                                stop_sequences=["END", "\n\n"], metadata={"user_id": "u-1"}, stream=True))
    assert req.messages == (Message("system", "Be brief."), Message("user", "hi"))
    s = req.sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.stop) == (0.5, 0.9, 64, ("END", "\n\n"))
    assert req.user == "u-1" and req.stream and req.reasoning_effort is None


def test_system_blocks_are_joined() -> None:
    req = to_generation(request(system=[{"type": "text", "text": "One."},
                                        {"type": "text", "text": "Two.", "cache_control": {"type": "ephemeral"}}]))
    assert req.messages[0] == Message("system", "One.\nTwo.")


def test_images_base64_and_url_keep_their_order() -> None:
    content = [{"type": "text", "text": "Compare "},
               {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
               {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}}]
    msg = to_generation(request(messages=[{"role": "user", "content": content}])).messages[0]
    assert msg.content == "Compare "
    assert msg.parts == ("Compare ", ImageInput(f"data:image/png;base64,{PNG}"),
                         ImageInput("https://example.test/cat.jpg"))


def test_tool_round_trip_history() -> None:
    turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Use the tool.", "signature": "abc"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "timeout"}]},
            {"type": "text", "text": "And tomorrow?"}]},
    ]
    req = to_generation(request(messages=turns, tools=[TOOL]))
    assert req.messages == (
        Message("user", "Weather in Paris?"),
        Message("assistant", "Checking.", tool_calls=(ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),),
                reasoning="Use the tool."),
        Message("tool", "18C", tool_call_id="toolu_1"),
        Message("tool", "Error: timeout", tool_call_id="toolu_2"),
        Message("user", "And tomorrow?"),
    )
    assert req.tools[0].name == "get_weather" and req.tools[0].parameters == TOOL["input_schema"]


def test_tool_result_images_follow_as_a_user_turn() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    turns = [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "shot:"}, image]}]}]
    messages = to_generation(request(messages=turns)).messages
    assert messages[0] == Message("tool", "shot:", tool_call_id="t1")
    assert messages[1].role == "user" and messages[1].images == (ImageInput(f"data:image/png;base64,{PNG}"),)


@pytest.mark.parametrize(("choice", "core", "parallel"), [
    (None, "auto", True),
    ({"type": "auto"}, "auto", True),
    ({"type": "any"}, "required", True),
    ({"type": "none"}, "none", True),
    ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}, NamedTool("get_weather"), False),
])
def test_tool_choice(choice: dict[str, Any] | None, core: Any, parallel: bool) -> None:
    req = to_generation(request(tools=[TOOL], tool_choice=choice))
    assert req.tool_choice == core and req.parallel_tool_calls is parallel


def test_named_tool_choice_must_be_a_tool() -> None:
    with pytest.raises(InvalidRequestError) as info:
        to_generation(request(tools=[TOOL], tool_choice={"type": "tool", "name": "other"}))
    assert info.value.param == "tool_choice"


@pytest.mark.parametrize(("thinking", "effort"), [
    ({"type": "enabled", "budget_tokens": 1024}, "low"),
    ({"type": "enabled", "budget_tokens": 8000}, "medium"),
    ({"type": "enabled", "budget_tokens": 20000}, "high"),
    ({"type": "enabled", "budget_tokens": 40000}, "xhigh"),
    ({"type": "disabled"}, "none"),
    ({"type": "adaptive"}, None),
])
def test_thinking_maps_to_reasoning_effort(thinking: dict[str, Any], effort: str | None) -> None:
    assert to_generation(request(thinking=thinking, max_tokens=64000)).reasoning_effort == effort


def test_thinking_budget_must_be_below_max_tokens() -> None:
    with pytest.raises(InvalidRequestError) as info:
        to_generation(request(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=1024))
    assert info.value.param == "max_tokens"


@pytest.mark.parametrize(("effort", "core"), [("low", "low"), ("high", "high"), ("max", "xhigh")])
def test_output_config_effort_is_the_reasoning_effort(effort: str, core: str) -> None:
    req = to_generation(request(thinking={"type": "adaptive"}, output_config={"effort": effort}))
    assert req.reasoning_effort == core


def test_output_config_format_is_a_json_schema() -> None:
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    fmt = to_generation(request(output_config={"format": {"type": "json_schema", "schema": schema}})).response_format
    assert fmt is not None and (fmt.type, fmt.schema, fmt.strict) == ("json_schema", schema, True)
    with pytest.raises(InvalidRequestError) as info:
        to_generation(request(output_config={"format": {"type": "json_schema", "schema": {"type": 7}}}))
    assert info.value.param == "output_config.format.schema"


def test_claude_code_request_shape() -> None:
    """What Claude Code 2.1 sends (seen on the wire): system blocks with cache_control, a system turn in the
    middle of the conversation, adaptive thinking with an effort, a JSON user id and fields Shoal ignores."""
    body = request(
        model="claude-opus-4-8", max_tokens=64000, stream=True,
        system=[{"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                               {"type": "text", "text": "Say hi",
                                                "cache_control": {"type": "ephemeral"}}]},
                  {"role": "system", "content": "Available agent types: ..."}],
        tools=[{**TOOL, "name": "Bash"}],
        metadata={"user_id": '{"device_id":"' + "d" * 64 + '","account_uuid":"","session_id":"s"}'},
        thinking={"type": "adaptive"}, output_config={"effort": "high"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]})
    req = to_generation(body)
    assert [m.role for m in req.messages] == ["system", "user", "system"]
    assert req.messages[0].content == "You are Claude Code.\nBe careful."
    assert req.messages[2].content == "Available agent types: ..."
    assert req.reasoning_effort == "high" and req.sampling.max_tokens == 64000
    assert body.ignored_fields() == ["context_management"]


def test_count_tokens_request_has_no_sampling() -> None:
    body = CountTokensRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                              "tools": [TOOL]})
    req = to_generation(body)
    assert req.sampling.max_tokens is None and req.tools[0].name == "get_weather"


@pytest.mark.parametrize("fields", [
    {"max_tokens": None},
    {"max_tokens": 0},
    {"temperature": 1.5},
    {"messages": []},
    {"messages": [{"role": "tool", "content": "x"}]},
    {"messages": [{"role": "system", "content": [{"type": "image", "source": {"type": "url",
                                                                              "url": "https://a.test/x.png"}}]}]},
    {"output_config": {"effort": "extreme"}},
    {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                                                                             "media_type": "image/bmp",
                                                                             "data": PNG}}]}]},
    {"tools": [{"name": "web_search", "type": "web_search_20250305"}]},
    {"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]},
    {"tool_choice": {"type": "tool"}},
    {"thinking": {"type": "enabled", "budget_tokens": 10}},
])
def test_invalid_bodies_are_rejected(fields: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **fields}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(ValidationError):
        MessagesRequest.model_validate(body)
