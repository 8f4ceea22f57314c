"""Encoders of the Messages front-end: a ``message`` object, or its SSE stream of events.

The stream is Anthropic's: ``message_start``, ``ping``, per content block
``content_block_start`` → ``content_block_delta``… → ``content_block_stop``,
then ``message_delta`` (stop reason and usage) and ``message_stop``. A failure
after the stream began is an ``error`` event, never a silent end. The
``anthropic`` SDK's ``messages.stream()`` helper rebuilds the message from
exactly this order.

Reasoning becomes ``thinking`` blocks. Their ``signature`` (which Anthropic uses
to verify thinking sent back to it) is a digest of the thinking text: stable
and opaque, and never checked when a client replays it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from shoal import sse
from shoal.api.encoding import new_id
from shoal.core.accumulate import Accumulator
from shoal.core.types import Finish, FinishReason, GenerationEvent, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from shoal.errors import ShoalError

STOP_REASONS: dict[FinishReason, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                         "content_filter": "refusal", "error": "end_turn"}

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}
"""Anthropic's error ``type`` by HTTP status; any other status is an ``api_error``."""


def error_type(status: int) -> str:
    """The Anthropic error type of an HTTP status."""
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    """An Anthropic error object: ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def signature(thinking: str) -> str:
    """The ``signature`` of a thinking block (see the module docstring)."""
    return hashlib.sha256(thinking.encode()).hexdigest()[:32]


def usage_dict(usage: Usage) -> dict[str, Any]:
    """Anthropic usage: ``input_tokens`` counts only the uncached part of the prompt."""
    return {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens),
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def stop_fields(finish: Finish | None, has_calls: bool) -> dict[str, Any]:
    """``stop_reason`` and ``stop_sequence`` of a finished generation."""
    if finish is None:
        return {"stop_reason": "end_turn", "stop_sequence": None}
    if finish.stop_sequence is not None:
        return {"stop_reason": "stop_sequence", "stop_sequence": finish.stop_sequence}
    reason = STOP_REASONS.get(finish.reason, "end_turn")
    if has_calls and reason == "end_turn":
        reason = "tool_use"
    return {"stop_reason": reason, "stop_sequence": None}


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the ``input`` object (unparsable text kept under ``_raw``)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_value": value}


async def message_body(events: AsyncIterable[GenerationEvent], *, message_id: str, model: str) -> dict[str, Any]:
    """Run the generation to the end and build the ``message`` object."""
    acc = Accumulator()
    finish: Finish | None = None
    async for event in events:
        acc.add(event)
        if isinstance(event, Finish):
            finish = event
    content: list[dict[str, Any]] = []
    if acc.reasoning:
        content.append({"type": "thinking", "thinking": acc.reasoning, "signature": signature(acc.reasoning)})
    if acc.text:
        content.append({"type": "text", "text": acc.text})
    calls = acc.tool_calls
    for call in calls:
        content.append({"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name,
                        "input": tool_input(call.arguments)})
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            **stop_fields(finish, bool(calls)), "usage": usage_dict(acc.usage)}


class _Blocks:
    """The open content block of a stream, and the frames that open and close blocks."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None
        self.call: int | None = None
        self.thinking: list[str] = []

    def open(self, kind: str, block: dict[str, Any], call: int | None = None) -> list[bytes]:
        """Close the open block (if any) and start ``block``."""
        frames = self.close()
        self.index += 1
        self.kind, self.call = kind, call
        frames.append(_frame("content_block_start", {"index": self.index, "content_block": block}))
        return frames

    def close(self) -> list[bytes]:
        """Close the open block: a thinking block gets its signature first."""
        if self.kind is None:
            return []
        frames = []
        if self.kind == "thinking":
            frames.append(self.delta({"type": "signature_delta", "signature": signature("".join(self.thinking))}))
            self.thinking = []
        frames.append(_frame("content_block_stop", {"index": self.index}))
        self.kind = self.call = None
        return frames

    def delta(self, delta: dict[str, Any]) -> bytes:
        """A delta of the open block."""
        return _frame("content_block_delta", {"index": self.index, "delta": delta})


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    return sse.event_frame(kind, {"type": kind, **data})


def error_frame(exc: ShoalError) -> bytes:
    """The ``error`` event of a failure after the stream began."""
    return sse.event_frame("error", error_body(exc.status_code, exc.message))


async def event_frames(events: AsyncIterable[GenerationEvent], *, message_id: str, model: str) -> AsyncIterator[bytes]:
    """SSE frames of the Messages stream (see the module docstring for the order)."""
    yield _frame("message_start", {"message": {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage_dict(Usage())}})
    yield _frame("ping", {})
    blocks = _Blocks()
    calls = False
    finish: Finish | None = None
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                if not event.text:
                    continue
                if blocks.kind != "text":
                    for frame in blocks.open("text", {"type": "text", "text": ""}):
                        yield frame
                yield blocks.delta({"type": "text_delta", "text": event.text})
            elif isinstance(event, ReasoningDelta):
                if not event.text:
                    continue
                if blocks.kind != "thinking":
                    for frame in blocks.open("thinking", {"type": "thinking", "thinking": "", "signature": ""}):
                        yield frame
                blocks.thinking.append(event.text)
                yield blocks.delta({"type": "thinking_delta", "thinking": event.text})
            elif isinstance(event, ToolCallDelta):
                if blocks.kind != "tool_use" or blocks.call != event.index:
                    calls = True
                    block = {"type": "tool_use", "id": event.id or new_id("toolu_"), "name": event.name or "",
                             "input": {}}
                    for frame in blocks.open("tool_use", block, call=event.index):
                        yield frame
                if event.arguments:
                    yield blocks.delta({"type": "input_json_delta", "partial_json": event.arguments})
            elif isinstance(event, Finish):
                finish = event
    except ShoalError as exc:
        yield error_frame(exc)
        return
    for frame in blocks.close():
        yield frame
    usage = usage_dict(finish.usage if finish is not None else Usage())
    yield _frame("message_delta", {"delta": stop_fields(finish, calls), "usage": usage})
    yield _frame("message_stop", {})
