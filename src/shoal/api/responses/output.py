"""The pieces of a Response the builder puts together: usage, call items, frozen copies, the choices mirror."""

from __future__ import annotations

from typing import Any, cast

from shoal.api.encoding import new_id
from shoal.api.responses.tools import CallShape
from shoal.core.types import ToolCallDelta, Usage
from shoal.protocol.responses_output import CallItem, Choice, ChoiceMessage, OutputItem, ResponseUsage


def usage_dict(usage: Usage) -> ResponseUsage:
    """Responses usage with cached, reasoning and tool output token details."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "tool_output_tokens": usage.tool_output_tokens,
        },
        "total_tokens": usage.total_tokens,
    }


def new_call(event: ToolCallDelta, shape: CallShape) -> CallItem:
    """The item of a new call, shaped by the tool it calls (namespace, custom)."""
    call_id = event.id or new_id("call_")
    item: CallItem
    if shape.kind == "custom":
        item = {"id": new_id("ctc_"), "type": "custom_tool_call", "status": "in_progress", "call_id": call_id,
                "name": event.name or "", "input": ""}
    else:
        item = {"id": new_id("fc_"), "type": "function_call", "status": "in_progress", "call_id": call_id,
                "name": event.name or "", "arguments": ""}
    if shape.namespace is not None:
        item["namespace"] = shape.namespace
    return item


def frozen(item: OutputItem) -> OutputItem:
    """An item as an event carries it: later deltas must not change what was sent."""
    copied: dict[str, Any] = dict(item)
    if "content" in copied:
        copied["content"] = [dict(p, **{k: list(p[k]) for k in ("logprobs", "annotations") if k in p})
                             for p in copied["content"]]
    if "action" in copied:
        copied["action"] = dict(copied["action"])
    return cast(OutputItem, copied)


def choice(output: list[OutputItem], finish_reason: str) -> Choice:
    """DigitalOcean's chat-style mirror of the output."""
    text = "".join(p["text"] for i in output if i["type"] == "message" for p in i["content"])
    reasoning = "".join(p["text"] for i in output if i["type"] == "reasoning" for p in i["content"])
    message: ChoiceMessage = {"role": "assistant", "content": text}
    if reasoning:
        message["reasoning_content"] = reasoning
    calls = [i for i in output if i["type"] == "function_call" or i["type"] == "custom_tool_call"]
    if calls:
        message["tool_calls"] = [{"id": c["call_id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c.get("arguments", c.get("input"))}}
                                 for c in calls]
    return {"index": 0, "finish_reason": finish_reason, "message": message}
