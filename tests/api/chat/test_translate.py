"""Chat completion request -> GenerationRequest."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from shoal.api.chat.translate import to_generation
from shoal.core.types import Message, NamedTool, ToolCall, ToolSpec
from shoal.errors import InvalidRequestError
from shoal.protocol.chat import ChatCompletionRequest

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "d",
                                         "parameters": {"type": "object", "properties": {}}, "strict": True}}


def translate(**body: Any):  # type: ignore[no-untyped-def]
    body.setdefault("model", "m")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return to_generation(ChatCompletionRequest.model_validate(body))


def test_defaults() -> None:
    g = translate()
    assert g.model == "m"
    assert g.messages == (Message("user", "hi"),)
    assert g.tool_choice == "auto" and g.tools == () and g.parallel_tool_calls is True
    s = g.sampling
    assert (s.temperature, s.top_p, s.seed, s.stop, s.max_tokens, s.logprobs, s.top_logprobs) == \
        (None, None, None, (), None, False, 0)


def test_messages_roles_parts_tool_calls_reasoning() -> None:
    g = translate(messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "reasoning_content": "hmm",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ])
    assert g.messages == (
        Message("developer", "be brief"),
        Message("user", "ab"),
        Message("assistant", "", tool_calls=(ToolCall("c1", "f", "{}"),), reasoning="hmm"),
        Message("tool", "42", tool_call_id="c1"),
    )


def test_sampling_fields() -> None:
    g = translate(temperature=0, top_p=0.9, seed=1, stop="END", logprobs=True, top_logprobs=3, user="u")
    s = g.sampling
    assert (s.temperature, s.top_p, s.seed, s.stop, s.logprobs, s.top_logprobs) == (0, 0.9, 1, ("END",), True, 3)
    assert g.user == "u"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"max_tokens": 10}, 10),
    ({"max_completion_tokens": 20}, 20),
    ({"max_tokens": 10, "max_completion_tokens": 20}, 20),
    ({}, None),
])
def test_max_completion_tokens_wins(fields: dict[str, int], expected: int | None) -> None:
    assert translate(**fields).sampling.max_tokens == expected


def test_tools_and_choices() -> None:
    g = translate(tools=[TOOL], parallel_tool_calls=False)
    assert g.tools == (ToolSpec("get_weather", "d", {"type": "object", "properties": {}}, True),)
    assert g.parallel_tool_calls is False
    assert translate(tools=[TOOL], tool_choice="required").tool_choice == "required"
    assert translate(tools=[TOOL], tool_choice="none").tool_choice == "none"
    named = translate(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert named.tool_choice == NamedTool("get_weather")


def test_named_tool_choice_must_be_in_tools() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "other"}})
    assert info.value.param == "tool_choice" and "other" in info.value.message
    assert info.value.status_code == 400


def test_required_needs_tools() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate(tool_choice="required")
    assert info.value.param == "tool_choice"


@pytest.mark.parametrize("body", [
    {"messages": []},
    {"temperature": 2.5},
    {"top_p": -0.1},
    {"max_tokens": 0},
    {"stop": ["a", "b", "c", "d", "e"]},
    {"n": 2},
    {"top_logprobs": 2},  # without logprobs
    {"messages": [{"role": "tool", "content": "x"}]},
    {"messages": [{"role": "user"}]},
    {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
    {"metadata": {f"k{i}": "v" for i in range(17)}},
    {"metadata": {"k": "v" * 513}},
    {"metadata": {"k" * 65: "v"}},
])
def test_schema_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        translate(**body)


def test_unknown_fields_are_kept_aside() -> None:
    body = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                 "foo": 1, "service_tier": "auto"})
    assert body.ignored_fields() == ["foo", "service_tier"]


def test_image_parts_become_ordered_message_parts() -> None:
    from shoal.core.types import ImageInput

    png = "data:image/png;base64,iVBORw0KGgo="
    g = translate(messages=[
        {"role": "system", "content": "describe images"},
        {"role": "user", "content": [{"type": "text", "text": "Left:"},
                                     {"type": "image_url", "image_url": {"url": png, "detail": "low"}},
                                     {"type": "text", "text": " right:"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}}]},
    ])
    system, user = g.messages
    assert system == Message("system", "describe images") and system.parts == ()
    assert user.content == "Left: right:"  # text-only consumers still see the text
    assert user.parts == ("Left:", ImageInput(png, "low"), " right:", ImageInput("https://example.com/b.jpg"))
    assert g.images == (ImageInput(png, "low"), ImageInput("https://example.com/b.jpg", "auto"))


def test_text_only_parts_stay_plain_content() -> None:
    g = translate(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}]}])
    assert g.messages == (Message("user", "a"),) and g.images == ()
