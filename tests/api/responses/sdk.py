"""Checking Responses events and objects with the openai SDK's own types and stream accumulator."""

from __future__ import annotations

import typing
from typing import Any

import pydantic
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseError, ResponseStreamEvent

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
SDK_ERROR_CODES = set(typing.get_args(ResponseError.model_fields["code"].annotation))


def validate_event(event: dict[str, Any]) -> Any:
    """Strict validation of one event; the parsed class must be the one its ``type`` names."""
    parsed = EVENT.validate_python(event)
    assert parsed.type == event["type"]
    if "response" in event:
        Response.model_validate(event["response"])
    return parsed


def sdk_accumulate(events: list[dict[str, Any]]) -> Any:
    """Feed events, parsed as the client parses them, through responses.stream()'s state machine.

    Returns the final parsed response (or None when the stream did not complete).
    Raises RuntimeError/AssertionError on any order the SDK rejects.
    """
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for event in events:
        for out in state.handle_event(construct_type(type_=ResponseStreamEvent, value=event)):  # type: ignore[arg-type]
            if out.type == "response.completed":
                final = out.response
    return final
