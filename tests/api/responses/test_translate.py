"""Responses request (and input items) -> GenerationRequest."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from shoal.api.responses.translate import to_generation
from shoal.core.types import Message, NamedTool, ToolCall, ToolSpec
from shoal.errors import InvalidRequestError
from shoal.protocol.responses import ResponsesRequest

FLAT = {"type": "function", "name": "get_weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}
CHAT = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def translate(**body: Any):  # type: ignore[no-untyped-def]
    body.setdefault("model", "m")
    body.setdefault("input", "hi")
    return to_generation(ResponsesRequest.model_validate(body))


def test_input_string_is_one_user_message() -> None:
    g = translate(input="Hello")
    assert g.messages == (Message("user", "Hello"),)
    assert g.tool_choice == "auto" and g.parallel_tool_calls is True


def test_instructions_go_first_as_system() -> None:
    g = translate(instructions="Be brief.", input=[
        {"role": "developer", "content": "dev"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                        {"type": "input_text", "text": "b"}]},
    ])
    assert g.messages == (Message("system", "Be brief."), Message("developer", "dev"), Message("user", "ab"))


def test_history_items() -> None:
    g = translate(input=[
        {"role": "user", "content": "weather in Paris and the time?"},
        {"type": "reasoning", "id": "rs_1", "summary": [],
         "content": [{"type": "reasoning_text", "text": "use tools"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sunny at noon."}]},
        {"role": "tool", "tool_call_id": "c9", "content": "chat-style tool message"},
    ])
    assert g.messages == (
        Message("user", "weather in Paris and the time?"),
        Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city":"Paris"}'),
                                             ToolCall("c2", "get_time", "{}")), reasoning="use tools"),
        Message("tool", "sunny", tool_call_id="c1"),
        Message("tool", "noon", tool_call_id="c2"),
        Message("assistant", "Sunny at noon."),
        Message("tool", "chat-style tool message", tool_call_id="c9"),
    )


def test_reasoning_from_summary_attaches_to_next_assistant_message() -> None:
    g = translate(input=[
        {"role": "user", "content": "q"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "short"}]},
        {"role": "assistant", "content": "a"},
    ])
    assert g.messages[1] == Message("assistant", "a", reasoning="short")


def test_flat_and_chat_style_tools() -> None:
    g = translate(tools=[FLAT, CHAT], parallel_tool_calls=False)
    assert g.tools == (
        ToolSpec("get_weather", "d", FLAT["parameters"], True),
        ToolSpec("get_time", None, {"type": "object", "properties": {}}, False),
    )
    assert g.parallel_tool_calls is False


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", "auto"),
    ("none", "none"),
    ("required", "required"),
    ({"type": "function", "name": "get_time"}, NamedTool("get_time")),
    ({"type": "function", "function": {"name": "get_weather"}}, NamedTool("get_weather")),
])
def test_tool_choice_forms(choice: Any, expected: Any) -> None:
    assert translate(tools=[FLAT, CHAT], tool_choice=choice).tool_choice == expected


@pytest.mark.parametrize("body", [
    {"tool_choice": "required"},
    {"tools": [FLAT], "tool_choice": {"type": "function", "name": "nope"}},
    {"tools": [FLAT], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
])
def test_tool_choice_errors(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate(**body)
    assert info.value.param == "tool_choice" and info.value.status_code == 400


def test_unknown_include_is_400_naming_it() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate(include=["file_search_call.results"])
    assert info.value.param == "include"
    assert "file_search_call.results" in info.value.message


def test_logprobs_include_and_top_logprobs() -> None:
    g = translate(include=["message.output_text.logprobs", "reasoning.encrypted_content"], top_logprobs=2)
    assert g.sampling.logprobs is True and g.sampling.top_logprobs == 2
    assert translate().sampling.logprobs is False


@pytest.mark.parametrize(("fields", "expected"), [
    ({"max_output_tokens": 10}, 10),
    ({"max_tokens": 20}, 20),
    ({"max_output_tokens": 10, "max_tokens": 20}, 10),
    ({}, None),
])
def test_max_tokens_alias(fields: dict[str, int], expected: int | None) -> None:
    assert translate(**fields).sampling.max_tokens == expected


def test_sampling() -> None:
    s = translate(temperature=0.2, top_p=0.3, seed=4, stop=["x"]).sampling
    assert (s.temperature, s.top_p, s.seed, s.stop) == (0.2, 0.3, 4, ("x",))


@pytest.mark.parametrize("body", [
    {"input": []},
    {"max_output_tokens": 0},
    {"temperature": 3},
    {"top_p": 2},
    {"stop": ["1", "2", "3", "4", "5"]},
    {"tools": [{"type": "function", "name": "has space"}]},
    {"input": [{"role": "tool", "content": "no id"}]},
    {"input": [{"type": "function_call", "name": "f"}]},
    {"metadata": {"k": 1}},
    {"truncation": "sometimes"},
])
def test_schema_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        translate(**body)


def test_input_image_parts_become_ordered_message_parts() -> None:
    from shoal.core.types import ImageInput

    g = translate(instructions="Be brief.", input=[
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
                                     {"type": "input_text", "text": "What is it?"}]},
    ])
    system, user = g.messages
    assert system.parts == () and user.content == "What is it?"
    assert user.parts == (ImageInput("https://example.com/a.png", "high"), "What is it?")
    assert user.images == (ImageInput("https://example.com/a.png", "high"),)


def test_stored_input_items_keep_images_and_parse_back() -> None:
    from shoal.api.responses.items import parse_items, stored_input_items
    from shoal.api.responses.translate import input_messages
    from shoal.core.types import ImageInput

    png = "data:image/png;base64,iVBORw0KGgo="
    body = ResponsesRequest.model_validate({"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "see"},
                                     {"type": "input_image", "image_url": png, "detail": "low"}]}]})
    stored = stored_input_items(body)
    assert stored[0]["content"][1] == {"type": "input_image", "image_url": png, "detail": "low"}
    history = input_messages(parse_items(stored))  # the next turn's history, from the database's dicts
    assert history[0].parts == ("see", ImageInput(png, "low"))


STORED_HISTORY: list[dict[str, Any]] = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be terse."}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "42"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 42."}]},
    {"role": "user", "content": [{"type": "input_text", "text": "two"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Two."}]},
]


def test_history_is_translated_once_and_truncated_by_whole_turns() -> None:
    from shoal.api.responses.items import parse_items
    from shoal.api.responses.translate import History, input_messages

    history = History(STORED_HISTORY)
    assert history.items == STORED_HISTORY
    assert history.messages == input_messages(parse_items(STORED_HISTORY))
    assert [m.role for m in history.messages] == ["developer", "user", "assistant", "tool", "assistant", "user",
                                                  "assistant"]
    dropped: list[list[str]] = []
    while history.drop_oldest_turn():
        dropped.append([m.role for m in history.messages])
        assert history.messages == input_messages(parse_items(history.items))  # the two stay in step
    # The developer message, then the first exchange (up to the next user message), then the rest.
    assert dropped == [["user", "assistant", "tool", "assistant", "user", "assistant"], ["user", "assistant"], []]
    assert not history and history.items == [] and not History([])


def test_history_goes_between_the_instructions_and_the_input() -> None:
    from shoal.api.responses.translate import History

    body = ResponsesRequest.model_validate({"model": "m", "instructions": "Rules.", "input": "three"})
    history = History(STORED_HISTORY[5:])
    g = to_generation(body, history.messages)
    assert [(m.role, m.content) for m in g.messages] == [
        ("system", "Rules."), ("user", "two"), ("assistant", "Two."), ("user", "three")]
