"""Checking Responses objects and stream events against the Open Responses schema (``openresponses-types``).

A stricter check than the openai SDK's own types: every field the specification
requires must be present (``presence_penalty``, ``service_tier``, ...), and only
the event types it defines are known.
"""

from __future__ import annotations

import enum
import typing
from typing import Any

import openresponses_types.types as spec
from pydantic import BaseModel


def _event_classes() -> dict[str, type[BaseModel]]:
    """Event type -> its model, from every model of the package with ``type`` and ``sequence_number``."""
    found: dict[str, type[BaseModel]] = {}
    for value in vars(spec).values():
        if not (isinstance(value, type) and issubclass(value, BaseModel)):
            continue
        fields = value.model_fields
        if "type" not in fields or "sequence_number" not in fields:
            continue
        kind = fields["type"].annotation
        names = [e.value for e in kind] if isinstance(kind, type) and issubclass(kind, enum.Enum) \
            else list(typing.get_args(kind))
        for name in names:
            found[str(name)] = value
    return found


EVENTS = _event_classes()


def validate_response(obj: dict[str, Any]) -> spec.ResponseResource:
    """A Response object as the specification's ``ResponseResource`` (raises on any missing or bad field)."""
    return spec.ResponseResource.model_validate(obj)


def validate_events(events: list[dict[str, Any]]) -> None:
    """Every event is of a type the specification defines and validates as that type (its response too)."""
    assert events, "no events"
    for event in events:
        model = EVENTS.get(event["type"])
        assert model is not None, f"not an Open Responses event type: {event['type']}"
        model.model_validate(event)
        if "response" in event:
            validate_response(event["response"])
