"""The typed Responses output matches the openai SDK's own types: every event, every item, the Response."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from openai.types import responses as sdk
from openai.types.responses import ResponseStreamEvent as SdkStreamEvent

from shoal.protocol import responses_output as out

SDK_EVENTS: dict[str, type[Any]] = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(SdkStreamEvent)[0])
}
OURS = typing.get_args(out.ResponseStreamEvent)
# Fields Shoal sends that this SDK version does not declare (it ignores them), each for a reason:
EXTRA_FIELDS: dict[str, set[str]] = {
    # DigitalOcean's chat-style mirror and its ``created`` alias; the Open Responses schema's fields.
    "Response": {"created", "choices", "store", "presence_penalty", "frequency_penalty"},
    "FunctionCallArgumentsDoneEvent": {"name"},  # OpenAI sends it; the SDK's class lags
    "CustomToolCall": {"status"},  # as every other item has
}


def literal(cls: type[Any], key: str = "type") -> str:
    (value,) = typing.get_args(typing.get_type_hints(cls)[key])
    return str(value)


def test_every_event_type_is_distinct_and_one_the_sdk_knows() -> None:
    types = [literal(cls) for cls in OURS]
    assert len(types) == len(set(types)) == len(OURS)
    assert set(types) <= set(SDK_EVENTS), set(types) - set(SDK_EVENTS)


@pytest.mark.parametrize("cls", OURS, ids=lambda c: c.__name__)
def test_event_fields_are_the_sdk_event_fields(cls: type[Any]) -> None:
    """Same field names as the SDK's event class (the ones it requires at least), in wire order."""
    ours = list(typing.get_type_hints(cls))
    theirs = SDK_EVENTS[literal(cls)].model_fields
    assert ours[:2] == ["type", "sequence_number"]
    assert set(ours) - EXTRA_FIELDS.get(cls.__name__, set()) <= set(theirs), set(ours) - set(theirs)
    required = {name for name, f in theirs.items() if f.is_required()}
    assert required <= set(ours), required - set(ours)
    assert cls.__doc__


def test_terminal_events_are_the_terminal_union() -> None:
    assert out.TERMINAL_EVENTS == {literal(cls) for cls in typing.get_args(out.TerminalEvent)}
    assert out.TERMINAL_EVENTS == {"response.completed", "response.incomplete", "response.failed"}


@pytest.mark.parametrize(("ours", "theirs"), [
    (out.OutputMessage, sdk.ResponseOutputMessage),
    (out.ReasoningItem, sdk.ResponseReasoningItem),
    (out.FunctionCall, sdk.ResponseFunctionToolCall),
    (out.CustomToolCall, sdk.ResponseCustomToolCall),
    (out.WebSearchCall, sdk.ResponseFunctionWebSearch),
    (out.OutputText, sdk.ResponseOutputText),
    (out.ResponseUsage, sdk.ResponseUsage),
    (out.Response, sdk.Response),
], ids=lambda c: c.__name__)
def test_object_fields_are_the_sdk_fields(ours: type[Any], theirs: type[Any]) -> None:
    fields = set(typing.get_type_hints(ours)) - EXTRA_FIELDS.get(ours.__name__, set())
    assert fields <= set(theirs.model_fields), fields - set(theirs.model_fields)
    required = {name for name, f in theirs.model_fields.items() if f.is_required()}
    assert required <= set(ours.__required_keys__), required - set(ours.__required_keys__)


def test_the_response_lists_every_status_the_sdk_has() -> None:
    theirs = set(typing.get_args(typing.get_args(sdk.Response.model_fields["status"].annotation)[0]))
    assert set(typing.get_args(out.ResponseStatus)) == theirs
    assert out.TERMINAL_STATUSES == theirs - {"queued", "in_progress"}


def test_output_item_union_covers_each_item_once() -> None:
    kinds = [literal(cls) for cls in typing.get_args(out.OutputItem)]
    assert sorted(kinds) == sorted(set(kinds)) == sorted(
        ["message", "reasoning", "function_call", "custom_tool_call", "web_search_call"])
