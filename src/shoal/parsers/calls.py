"""Recognizing a JSON value as one or more function calls (shared by the tool-call parsers)."""

from __future__ import annotations

import json
from typing import Any

_CALL_KEYS = frozenset({"name", "arguments", "parameters", "type", "id"})


def compact(value: Any) -> str:
    """Arguments as compact JSON text (what OpenAI sends)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def as_call(value: Any, names: set[str]) -> tuple[str, str] | None:
    """``(name, arguments JSON)`` when ``value`` is a call of one of ``names``, else None.

    Accepts ``{"name": ..., "arguments": {...}}`` (``parameters`` also, arguments
    given as a JSON string also, missing arguments meaning ``{}``) and the chat
    form ``{"type": "function", "function": {...}}``. Any other key means it is
    data, not a call.
    """
    if not isinstance(value, dict):
        return None
    if "function" in value and isinstance(value["function"], dict) and set(value) <= {"function", "type", "id"}:
        return as_call(value["function"], names)
    if not set(value) <= _CALL_KEYS or "arguments" in value and "parameters" in value:
        return None
    name = value.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return name, compact(args)


def as_calls(value: Any, names: set[str]) -> list[tuple[str, str]] | None:
    """A call, or a non-empty list of calls, as a list; None if any part is not a call."""
    if isinstance(value, list):
        if not value:
            return None
        calls = [as_call(v, names) for v in value]
        return None if any(c is None for c in calls) else [c for c in calls if c is not None]
    call = as_call(value, names)
    return None if call is None else [call]
