"""Input and output items as stored: normalizing and parsing back."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter

from shoal.api.encoding import new_id
from shoal.protocol.responses import InputItem, InputMessage, ReasoningItem, ResponsesRequest

_ITEMS = TypeAdapter(list[InputItem])
_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_",
           "custom_tool_call": "ctc_", "custom_tool_call_output": "ctco_"}


def stored_input_items(body: ResponsesRequest) -> list[dict[str, Any]]:
    """``input`` as a list of item dicts, each with an id (what ``input_items`` lists)."""
    if isinstance(body.input, str):
        return [{"id": new_id("msg_"), "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": body.input}]}]
    items = []
    for item in body.input:
        data = item.model_dump(exclude_none=True)
        if isinstance(item, InputMessage) and isinstance(item.content, str):
            part = "output_text" if item.role == "assistant" else "input_text"
            data["content"] = [{"type": part, "text": item.content}]
        data.setdefault("id", new_id(_PREFIX.get(data.get("type", "message"), "item_")))
        items.append(data)
    return items


def parse_items(items: Sequence[dict[str, Any]]) -> list[InputItem]:
    """Stored item dicts back into typed input items."""
    return _ITEMS.validate_python(list(items))


def output_as_input(output: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A response's output items in the form they take as the next turn's history."""
    items = []
    for item in output:
        kind = item.get("type")
        if kind == "message":
            items.append({"id": item["id"], "type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": p.get("text", "")}
                                      for p in item.get("content", ()) if p.get("type") == "output_text"]})
        elif kind == "reasoning":
            items.append({"id": item["id"], "type": "reasoning", "summary": list(item.get("summary", ())),
                          "content": list(item.get("content") or ())})
        elif kind in ("function_call", "custom_tool_call"):
            items.append({k: item[k] for k in ("id", "type", "call_id", "name", "arguments", "input", "namespace")
                          if k in item})
    return items


def seal_reasoning(text: str) -> str:
    """The opaque ``encrypted_content`` for a reasoning item.

    Shoal serves its own models, so there is nothing to hide from the client:
    the value only has to survive a round trip unchanged.
    """
    return "shoal1:" + base64.urlsafe_b64encode(text.encode()).decode()


def unseal_reasoning(item: ReasoningItem) -> str:
    """Reasoning text of an item that came back with ``encrypted_content`` only."""
    blob = item.encrypted_content or ""
    if blob.startswith("shoal1:"):
        try:
            return base64.urlsafe_b64decode(blob[len("shoal1:"):].encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return ""
    return ""
