"""Pure translation of an Anthropic Messages request into a :class:`GenerationRequest`.

Anthropic keeps a turn's tool calls and tool results as blocks inside the
assistant and user turns; the core types keep them as OpenAI does (calls on the
assistant message, one ``tool`` message per result). A user turn's
``tool_result`` blocks therefore become ``tool`` messages, in order, before the
turn's own text and images.
"""

from __future__ import annotations

import json

from shoal.api.formats import (
    SchemaCheck,
    check_prompt_fits,
    check_schema_sizes,
    check_tool_choice,
    check_tools,
    constrained_tools,
    json_schema_format,
    validate_schemas,
)
from shoal.core.types import (
    ContentPart,
    GenerationRequest,
    ImageInput,
    Message,
    NamedTool,
    ResponseFormat,
    SamplingParams,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from shoal.errors import InvalidRequestError
from shoal.protocol.messages import (
    CountTokensRequest,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ThinkingDisabled,
    ThinkingEnabled,
    ToolResultBlock,
    ToolUseBlock,
)

EFFORT_BUDGETS = ((4096, "low"), (16384, "medium"), (32768, "high"))
"""A thinking budget below each bound maps to that reasoning effort; above the last, ``xhigh``.

The inverse of the Anthropic backend's effort → budget table, so a request relayed
to an Anthropic upstream keeps about the budget it asked for."""


EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "xhigh"}
"""``output_config.effort`` as a reasoning effort."""


def reasoning_effort(body: CountTokensRequest) -> str | None:
    """How much the model should reason.

    ``thinking`` disabled is ``none``; enabled, its budget's band; otherwise (adaptive or
    absent) ``output_config.effort`` if given, else the model's default.
    """
    thinking = body.thinking
    if isinstance(thinking, ThinkingDisabled):
        return "none"
    if not isinstance(thinking, ThinkingEnabled):
        effort = body.output_config.effort if body.output_config else None
        return EFFORTS[effort] if effort else None
    for bound, level in EFFORT_BUDGETS:
        if thinking.budget_tokens < bound:
            return level
    return "xhigh"


def _tool_result(block: ToolResultBlock) -> tuple[Message, tuple[ImageInput, ...]]:
    """A ``tool`` message of the result's text, and the images it held (shown in a user turn after it)."""
    if isinstance(block.content, str):
        text, images = block.content, tuple[ImageInput, ...]()
    else:
        text = "".join(p.text for p in block.content if isinstance(p, TextBlock))
        images = tuple(ImageInput(p.url()) for p in block.content if isinstance(p, ImageBlock))
    if block.is_error:
        text = f"Error: {text}"
    return Message("tool", text, tool_call_id=block.tool_use_id), images


def to_messages(turn: MessageParam) -> list[Message]:
    """One wire turn as core messages (several when a user turn carries tool results)."""
    if isinstance(turn.content, str):
        return [Message(turn.role, turn.content)]
    if turn.role == "system":
        return [Message("system", "".join(b.text for b in turn.content if isinstance(b, TextBlock)))]
    if turn.role == "assistant":
        texts: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        for block in turn.content:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ThinkingBlock):
                thinking.append(block.thinking)
            elif isinstance(block, ToolUseBlock):
                calls.append(ToolCall(block.id, block.name, json.dumps(block.input, separators=(",", ":"))))
        return [Message("assistant", "".join(texts), tool_calls=tuple(calls),
                        reasoning="".join(thinking) or None)]
    messages: list[Message] = []
    parts: list[ContentPart] = []
    for block in turn.content:
        if isinstance(block, ToolResultBlock):
            message, images = _tool_result(block)
            messages.append(message)
            parts.extend(images)
        elif isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, ImageBlock):
            parts.append(ImageInput(block.url()))
    if parts:
        messages.append(Message.of_parts("user", parts))
    return messages


def tool_choice(body: CountTokensRequest, tools: tuple[ToolSpec, ...]) -> tuple[ToolChoice, bool]:
    """The core tool choice and whether parallel calls are allowed."""
    wire = body.tool_choice
    if wire is None:
        return "auto", True
    choice: ToolChoice
    if wire.type == "tool":
        assert wire.name is not None  # checked by the schema
        choice = NamedTool(wire.name)
    else:
        choice = {"auto": "auto", "any": "required", "none": "none"}[wire.type]  # type: ignore[assignment]
    return check_tool_choice(choice, tools), not wire.disable_parallel_tool_use


def response_format(body: CountTokensRequest) -> ResponseFormat | None:
    """``output_config.format`` as a checked ``json_schema`` response format (400 naming a bad schema)."""
    fmt = body.output_config.format if body.output_config else None
    if fmt is None:
        return None
    return json_schema_format("output", fmt.json_schema, True, None, FORMAT_PARAM)


FORMAT_PARAM = "output_config.format.schema"


def _schema_checks(request: GenerationRequest) -> list[tuple[SchemaCheck, bool]]:
    """The request's schemas (for validate_schemas), each with whether a grammar constrains with it."""
    forced = constrained_tools(request.tools, request.tool_choice)
    out = [((t.parameters, f"tool '{t.name}'", f"tools[{i}].input_schema"), t.name in forced)
           for i, t in enumerate(request.tools) if t.parameters is not None]
    fmt = request.response_format
    if fmt is not None and fmt.schema is not None:
        out.append(((fmt.schema, "output_config.format", FORMAT_PARAM), True))
    return out


async def translate(body: CountTokensRequest, context_length: int | None = None) -> GenerationRequest:
    """:func:`to_generation`, then the schemas' validity checked once, off the event loop (shoal.api.formats).

    Text that cannot fit in ``context_length`` tokens is a 400 before anything tokenizes it
    (:func:`shoal.api.formats.check_prompt_fits`).
    """
    request = to_generation(body)
    check_prompt_fits(((("system" if m.role == "system" else "messages"), m.content) for m in request.messages),
                      context_length)
    await validate_schemas([check for check, _ in _schema_checks(request)])
    return request


def to_generation(body: CountTokensRequest) -> GenerationRequest:
    """The engine-neutral request for ``body`` (a count_tokens body gets no sampling settings).

    With the cheap checks, schema sizes included; :func:`translate` adds the schemas' validity.
    """
    tools = tuple(ToolSpec(t.name, t.description, t.input_schema) for t in body.tools or ())
    check_tools(tools)
    choice, parallel = tool_choice(body, tools)
    messages: list[Message] = []
    system = body.system_text()
    if system:
        messages.append(Message("system", system))
    for turn in body.messages:
        messages.extend(to_messages(turn))
    sampling = SamplingParams()
    user = None
    stream = False
    if isinstance(body, MessagesRequest):
        if isinstance(body.thinking, ThinkingEnabled) and body.thinking.budget_tokens >= body.max_tokens:
            raise InvalidRequestError("'max_tokens' must be greater than 'thinking.budget_tokens'.",
                                      param="max_tokens")
        sampling = SamplingParams(temperature=body.temperature, top_p=body.top_p,
                                  stop=tuple(body.stop_sequences or ()), max_tokens=body.max_tokens)
        user = body.metadata.user_id if body.metadata else None
        stream = body.stream
    request = GenerationRequest(
        model=body.model,
        messages=tuple(messages),
        sampling=sampling,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        user=user,
        response_format=response_format(body),
        reasoning_effort=reasoning_effort(body),
        stream=stream,
    )
    check_schema_sizes([(schema, param, constrained) for (schema, _, param), constrained in _schema_checks(request)])
    return request
