"""Core types in the OpenAI chat-completions shape, as llama.cpp and OpenAI-compatible upstreams take them."""

from __future__ import annotations

from typing import Any

from shoal.core.types import ImageInput, Message, ResponseFormat


def content_parts(msg: Message) -> list[dict[str, Any]]:
    """A message with images as chat content parts (``text`` and ``image_url``), in the client's order."""
    out: list[dict[str, Any]] = []
    for part in msg.parts:
        if isinstance(part, ImageInput):
            image: dict[str, Any] = {"url": part.url}
            if part.detail != "auto":  # the default everywhere; some servers reject the field
                image["detail"] = part.detail
            out.append({"type": "image_url", "image_url": image})
        elif part:
            out.append({"type": "text", "text": part})
    return out


def message_dict(msg: Message, *, null_content_with_calls: bool = False) -> dict[str, Any]:
    """One message; ``developer`` becomes ``system``, which every chat template and upstream knows.

    A message with images sends its content as parts (routing sends those only to vision upstreams).
    """
    content: Any = content_parts(msg) if msg.images else msg.content
    out: dict[str, Any] = {"role": "system" if msg.role == "developer" else msg.role, "content": content}
    if msg.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in msg.tool_calls
        ]
        if null_content_with_calls and not msg.content:
            out["content"] = None
    if msg.tool_call_id:
        out["tool_call_id"] = msg.tool_call_id
    if msg.reasoning:
        out["reasoning_content"] = msg.reasoning
    return out


def response_format_dict(fmt: ResponseFormat) -> dict[str, Any] | None:
    """``response_format`` for JSON modes; None for plain text."""
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.type == "json_schema":
        schema: dict[str, Any] = {"name": fmt.name or "response", "strict": fmt.strict, "schema": fmt.schema or {}}
        if fmt.description:
            schema["description"] = fmt.description
        return {"type": "json_schema", "json_schema": schema}
    return None
