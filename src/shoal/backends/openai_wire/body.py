"""Core types as OpenAI request fields: messages, sampling fields, response formats and tools.

Every body builder (the local engine's, the chat-completions upstream's, the
Responses upstream's) takes its sampling fields from :func:`sampling_fields` and
its tools from :func:`tool_fields`, so they cannot drift apart. Where the
Responses API names or shapes a field differently (``max_output_tokens``, flat
tools, ``text.format``), ``api="responses"`` says so. The rules follow OpenAI's
API, stated so that servers with other defaults (llama.cpp) behave the same:

- ``top_logprobs`` goes out with logprobs and only then, even when it is 0:
  llama.cpp answers a missing one with 20 alternatives, OpenAI with none.
- ``parallel_tool_calls`` goes out only with ``tools``. False is always sent;
  True, OpenAI's default, only when ``explicit_parallel`` (llama.cpp's default
  is off), because OpenAI's o-series models reject the field outright.
- a tool's ``strict`` is passed through when set. Chat tools default to
  non-strict, so False is left out; Responses tools default to strict, so
  False is sent too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from shoal.core.types import GenerationRequest, ImageInput, Message, NamedTool, ResponseFormat, ToolChoice, ToolSpec

WireAPI = Literal["chat", "responses"]
"""Which OpenAI API the fields are for: ``/chat/completions`` (also llama.cpp's) or ``/responses``."""

LOGPROBS_INCLUDE = "message.output_text.logprobs"
"""What the Responses API must be asked to ``include`` for logprobs."""


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


def response_format_dict(fmt: ResponseFormat, *, api: WireAPI = "chat") -> dict[str, Any] | None:
    """``response_format`` (chat) or ``text.format`` (Responses, flat) for JSON modes; None for plain text."""
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.type != "json_schema":
        return None
    schema: dict[str, Any] = {"name": fmt.name or "response", "strict": fmt.strict, "schema": fmt.schema or {}}
    if fmt.description:
        schema["description"] = fmt.description
    if api == "responses":
        return {"type": "json_schema", **schema}
    return {"type": "json_schema", "json_schema": schema}


def sampling_fields(request: GenerationRequest, *, api: WireAPI = "chat") -> dict[str, Any]:
    """The request's sampling fields: what the caller left unset is left out, for the server's default.

    Temperature, top_p, seed, the output limit (``max_tokens``, or the Responses
    API's ``max_output_tokens``), stop, the penalties, logprobs (``logprobs``, or
    the Responses API's ``include``) with ``top_logprobs``, and the answer's
    format (``response_format``, or the Responses API's ``text.format``).
    """
    s = request.sampling
    out: dict[str, Any] = {}
    limit = "max_output_tokens" if api == "responses" else "max_tokens"
    for name, value in (("temperature", s.temperature), ("top_p", s.top_p), ("seed", s.seed), (limit, s.max_tokens),
                        ("presence_penalty", s.presence_penalty), ("frequency_penalty", s.frequency_penalty)):
        if value is not None:
            out[name] = value
    if s.stop:
        out["stop"] = list(s.stop)
    if s.logprobs:
        if api == "responses":
            out["include"] = [LOGPROBS_INCLUDE]
        else:
            out["logprobs"] = True
        out["top_logprobs"] = s.top_logprobs
    fmt = response_format_dict(request.response_format, api=api) if request.response_format else None
    if fmt is not None:
        if api == "responses":
            out["text"] = {"format": fmt}
        else:
            out["response_format"] = fmt
    return out


def tool_dict(tool: ToolSpec, *, api: WireAPI = "chat") -> dict[str, Any]:
    """One function tool: nested under ``function`` for chat, flat for the Responses API."""
    fn: dict[str, Any] = {"name": tool.name, "description": tool.description or "",
                          "parameters": tool.parameters or {"type": "object", "properties": {}}}
    if api == "responses":
        return {"type": "function", **fn, "strict": tool.strict}
    if tool.strict:
        fn["strict"] = True
    return {"type": "function", "function": fn}


def tool_choice_value(choice: ToolChoice, *, api: WireAPI = "chat") -> Any:
    """``tool_choice``: the mode's name, or the named function (nested for chat, flat for Responses)."""
    if not isinstance(choice, NamedTool):
        return choice
    if api == "responses":
        return {"type": "function", "name": choice.name}
    return {"type": "function", "function": {"name": choice.name}}


def tool_fields(tools: Sequence[ToolSpec], choice: ToolChoice, parallel: bool, *, api: WireAPI = "chat",
                explicit_parallel: bool = False) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls``; nothing at all without tools.

    ``explicit_parallel`` sends ``parallel_tool_calls: true`` too, for servers
    whose default is not OpenAI's (llama.cpp's is off); see the module's rules.
    """
    if not tools:
        return {}
    out: dict[str, Any] = {"tools": [tool_dict(t, api=api) for t in tools],
                           "tool_choice": tool_choice_value(choice, api=api)}
    if explicit_parallel or not parallel:
        out["parallel_tool_calls"] = parallel
    return out
