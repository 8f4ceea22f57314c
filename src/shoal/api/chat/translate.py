"""Pure translation of a chat completion request into a :class:`GenerationRequest`."""

from __future__ import annotations

from typing import Any

from shoal.api.formats import (
    check_prompt_fits,
    check_schema_sizes,
    check_tool_choice,
    check_tools,
    constrained_tools,
    json_schema_format,
    tool_param,
    tool_schema_checks,
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
from shoal.protocol.chat import ChatCompletionRequest, ChatMessage, ImagePart, TextPart

FORMAT_PARAM = "response_format.json_schema.schema"


def _parts(content: list[TextPart | ImagePart]) -> list[ContentPart]:
    """A list content as ordered text and image parts."""
    return [ImageInput(p.image_url.url, p.image_url.detail) if isinstance(p, ImagePart) else p.text
            for p in content]


def to_message(msg: ChatMessage) -> Message:
    """One wire message as a core message (images, if any, in ``parts``)."""
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or ())
    content = msg.content
    if not isinstance(content, list):  # plain text, the usual case: no parts to sort out
        return Message(msg.role, content or "", tool_calls=calls, tool_call_id=msg.tool_call_id,
                       reasoning=msg.reasoning_content)
    return Message.of_parts(msg.role, _parts(content), tool_calls=calls,
                            tool_call_id=msg.tool_call_id, reasoning=msg.reasoning_content)


def response_format(body: ChatCompletionRequest) -> ResponseFormat | None:
    """``response_format`` as a core format (its schema checked: 400 naming the problem)."""
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat("json_object")
    spec = fmt.json_schema
    assert spec is not None  # checked by the schema
    if spec.json_schema is None:
        raise InvalidRequestError(f"response_format '{spec.name}' has no 'schema'.",
                                  param="response_format.json_schema.schema")
    return json_schema_format(spec.name, spec.json_schema, spec.strict, spec.description, FORMAT_PARAM)


def _schemas(request: GenerationRequest) -> list[tuple[Any, str, bool]]:
    """Every schema of the request, with its field and whether it is compiled into a grammar."""
    forced = constrained_tools(request.tools, request.tool_choice)
    out: list[tuple[Any, str, bool]] = [(t.parameters, tool_param("tools", i), t.name in forced)
                                        for i, t in enumerate(request.tools)]
    if request.response_format is not None and request.response_format.schema is not None:
        out.append((request.response_format.schema, FORMAT_PARAM, True))
    return out


async def translate(body: ChatCompletionRequest, context_length: int | None = None) -> GenerationRequest:
    """:func:`to_generation`, then the schemas' validity checked off the event loop (400 naming the first bad one).

    First of all, text that cannot fit in ``context_length`` tokens is a 400 (see :func:`check_prompt_fits`).
    """
    check_prompt_fits(((f"messages[{i}].content", m.text()) for i, m in enumerate(body.messages)), context_length)
    request = to_generation(body)
    checks = tool_schema_checks(request.tools)
    fmt = request.response_format
    if fmt is not None and fmt.schema is not None:
        checks.append((fmt.schema, f"response_format '{fmt.name}'", FORMAT_PARAM))
    await validate_schemas(checks)
    return request


def to_generation(body: ChatCompletionRequest) -> GenerationRequest:
    """The engine-neutral request for ``body``, with the cheap checks (names, choice, schema sizes).

    The schemas' JSON-schema validity is left to :func:`translate`, which the route calls.
    """
    tools = tuple(
        ToolSpec(t.function.name, t.function.description, t.function.parameters, bool(t.function.strict))
        for t in body.tools or ()
    )
    check_tools(tools)
    choice: ToolChoice = "auto"
    if body.tool_choice is not None:
        wire = body.tool_choice
        choice = check_tool_choice(wire if isinstance(wire, str) else NamedTool(wire.function.name), tools)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    sampling = SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop or ()),
        max_tokens=max_tokens,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
    )
    request = GenerationRequest(
        model=body.model,
        messages=tuple(to_message(m) for m in body.messages),
        sampling=sampling,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
        user=body.user,
        response_format=response_format(body),
        reasoning_effort=body.reasoning_effort,
        stream=bool(body.stream),
        prompt_cache_key=body.prompt_cache_key,
    )
    check_schema_sizes(_schemas(request))
    return request
