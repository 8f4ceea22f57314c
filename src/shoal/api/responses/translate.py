"""Pure translation of a Responses request (and its input items) into a :class:`GenerationRequest`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from shoal.api.formats import (
    check_prompt_fits,
    SchemaCheck,
    check_schema_sizes,
    check_tool_choice,
    check_tools,
    constrained_tools,
    json_schema_format,
    tool_param,
    validate_schemas,
)
from shoal.api.responses.items import unseal_reasoning
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
from shoal.protocol.chat import ChatTool
from shoal.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionToolChoice,
    HostedToolChoice,
    InputImage,
    InputItem,
    InputMessage,
    ReasoningItem,
    ResponsesRequest,
    WebSearchTool,
)

LOGPROBS_INCLUDE = "message.output_text.logprobs"
ENCRYPTED_INCLUDE = "reasoning.encrypted_content"
SOURCES_INCLUDE = "web_search_call.action.sources"
KNOWN_INCLUDES = frozenset({LOGPROBS_INCLUDE, ENCRYPTED_INCLUDE, SOURCES_INCLUDE})
FORMAT_PARAM = "text.format.schema"

WEB_SEARCH = ToolSpec(
    "web_search",
    "Search the web for current information. Returns numbered results with title, URL and snippet; "
    "cite them in the answer by their URL.",
    {"type": "object", "properties": {"query": {"type": "string", "description": "What to search for"}},
     "required": ["query"]},
)
"""How the built-in web search is offered to the model: as a function it may call."""


def _parts(item: InputMessage) -> list[ContentPart]:
    """The content as ordered text and image parts."""
    if not isinstance(item.content, list):
        return [item.content or ""]
    return [ImageInput(p.image_url, p.detail) if isinstance(p, InputImage) else p.text for p in item.content]


def input_messages(items: str | Sequence[InputItem]) -> list[Message]:
    """Turn ``input`` into core messages.

    Consecutive ``function_call`` items become one assistant turn with several
    tool calls, and a ``reasoning`` item is attached to the assistant turn that
    follows it, which is how chat templates expect them.
    """
    if isinstance(items, str):
        return [Message(role="user", content=items)]
    messages: list[Message] = []
    reasoning: list[str] = []

    def take_reasoning() -> str | None:
        text = "".join(reasoning) or None
        reasoning.clear()
        return text

    for item in items:
        if isinstance(item, InputMessage):
            calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in item.tool_calls or ())
            think = take_reasoning() if item.role == "assistant" else None
            messages.append(Message.of_parts(item.role, _parts(item), tool_calls=calls,
                                             tool_call_id=item.tool_call_id, reasoning=think))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(item.call_id, item.name, item.arguments)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls and not reasoning:
                messages[-1] = replace(last, tool_calls=(*last.tool_calls, call))
            else:
                messages.append(Message(role="assistant", content="", tool_calls=(call,), reasoning=take_reasoning()))
        elif isinstance(item, FunctionCallOutputItem):
            messages.append(Message(role="tool", content=item.text(), tool_call_id=item.call_id))
        elif isinstance(item, ReasoningItem):
            reasoning.append(item.text() or unseal_reasoning(item))
    return messages


def wants_web_search(body: ResponsesRequest) -> bool:
    """Whether ``tools`` has the built-in web search."""
    return any(isinstance(tool, WebSearchTool) for tool in body.tools or ())


def _functions(body: ResponsesRequest) -> list[tuple[int, ToolSpec]]:
    """The function tools, each with its index in ``tools``."""
    specs = []
    for index, tool in enumerate(body.tools or ()):
        if isinstance(tool, ChatTool):
            fn = tool.function
            specs.append((index, ToolSpec(fn.name, fn.description, fn.parameters, bool(fn.strict))))
        elif not isinstance(tool, WebSearchTool):
            specs.append((index, ToolSpec(tool.name, tool.description, tool.parameters, bool(tool.strict))))
    return specs


def _tools(body: ResponsesRequest) -> tuple[ToolSpec, ...]:
    specs = [spec for _, spec in _functions(body)]
    if wants_web_search(body):
        if any(spec.name == WEB_SEARCH.name for spec in specs):
            raise InvalidRequestError(f"A function named '{WEB_SEARCH.name}' cannot be used together with the "
                                      "built-in web_search tool.", param="tools")
        specs.append(WEB_SEARCH)
    return tuple(specs)


def text_format(body: ResponsesRequest) -> ResponseFormat | None:
    """``text.format`` as a core format (its schema checked: 400 naming the problem)."""
    fmt = body.text.format if body.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat("json_object")
    assert fmt.name is not None and fmt.json_schema is not None  # checked by the schema
    return json_schema_format(fmt.name, fmt.json_schema, fmt.strict, fmt.description, FORMAT_PARAM)


def _tool_choice(body: ResponsesRequest, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    choice = body.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return check_tool_choice(choice, tools)
    if isinstance(choice, HostedToolChoice):
        if not wants_web_search(body):
            raise InvalidRequestError(f"tool_choice names the built-in tool '{choice.type}', which is not in 'tools'.",
                                      param="tool_choice")
        return NamedTool(WEB_SEARCH.name)
    name = choice.name if isinstance(choice, FunctionToolChoice) else choice.function.name
    return check_tool_choice(NamedTool(name), tools)


def check_include(body: ResponsesRequest) -> None:
    """Reject ``include`` values Shoal cannot honour, by name."""
    for value in body.include or ():
        if value not in KNOWN_INCLUDES:
            raise InvalidRequestError(f"include value '{value}' is not supported; supported: "
                                      + ", ".join(sorted(KNOWN_INCLUDES)) + ".", param="include")


def _schemas(body: ResponsesRequest, fmt: ResponseFormat | None) -> list[SchemaCheck]:
    """Every schema of the request, to validate: the tools' parameters, then the format's."""
    out: list[SchemaCheck] = [(spec.parameters, f"function '{spec.name}'", tool_param("tools", index))
                              for index, spec in _functions(body) if spec.parameters is not None]
    if fmt is not None and fmt.schema is not None:
        out.append((fmt.schema, f"response_format '{fmt.name}'", FORMAT_PARAM))
    return out


def _texts(body: ResponsesRequest) -> Iterator[tuple[str, str]]:
    """The request's own text (not the stored history), each with its field."""
    if body.instructions:
        yield "instructions", body.instructions
    if isinstance(body.input, str):
        yield "input", body.input
        return
    for index, item in enumerate(body.input):
        if isinstance(item, InputMessage):
            yield f"input[{index}].content", item.text()
        elif isinstance(item, FunctionCallOutputItem):
            yield f"input[{index}].output", item.text()
        elif isinstance(item, FunctionCallItem):
            yield f"input[{index}].arguments", item.arguments
        elif isinstance(item, ReasoningItem):
            yield f"input[{index}]", item.text()


async def check_request(body: ResponsesRequest, *, search_available: bool, context_length: int | None = None) -> None:
    """Every check of the request (tools, schemas and their sizes, choice, include), once, before anything runs.

    :func:`to_generation` (called again for each truncation step) leaves the tools'
    and format's schemas to this; their validity is checked off the event loop.
    Also a 400 when the built-in web search is asked for and no search provider is configured,
    and when the request's text cannot fit in ``context_length`` tokens (:func:`check_prompt_fits`).
    """
    check_prompt_fits(_texts(body), context_length)
    if wants_web_search(body) and not search_available:
        raise InvalidRequestError(
            "The web_search tool is not available: this server has no search provider configured. "
            "Start shoal with --web-search-url URL (or SHOAL_WEB_SEARCH_URL) pointing at a SearxNG-compatible "
            "JSON endpoint, or remove the tool.", param="tools", code="web_search_unavailable")
    check_tools([spec for _, spec in _functions(body)])
    request = to_generation(body)
    fmt = request.response_format
    forced = constrained_tools(request.tools, request.tool_choice)
    sizes = [(spec.parameters, tool_param("tools", index), spec.name in forced)
             for index, spec in _functions(body) if spec.parameters is not None]
    if fmt is not None and fmt.schema is not None:
        sizes.append((fmt.schema, FORMAT_PARAM, True))
    check_schema_sizes(sizes)
    await validate_schemas(_schemas(body, fmt))


def to_generation(body: ResponsesRequest, history: Sequence[Message] = ()) -> GenerationRequest:
    """The engine-neutral request for ``body`` (``history`` from a previous response goes first).

    Checks only what it needs to build the request (include, tool choice); the
    rest is :func:`check_request`'s, once per request.
    """
    check_include(body)
    messages: list[Message] = []
    if body.instructions:
        messages.append(Message(role="system", content=body.instructions))
    messages.extend(history)
    messages.extend(input_messages(body.input))
    tools = _tools(body)
    logprobs = LOGPROBS_INCLUDE in (body.include or ())
    sampling = SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop or ()),
        max_tokens=body.output_limit,
        logprobs=logprobs or bool(body.top_logprobs),
        top_logprobs=body.top_logprobs or 0,
    )
    return GenerationRequest(
        model=body.model,
        messages=tuple(messages),
        sampling=sampling,
        tools=tools,
        tool_choice=_tool_choice(body, tools),
        parallel_tool_calls=body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
        user=body.user,
        response_format=text_format(body),
        reasoning_effort=body.reasoning.effort if body.reasoning is not None else None,
        # A background response can be followed live later, so it is generated as a stream.
        stream=bool(body.stream or body.background),
    )
