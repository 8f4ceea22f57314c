"""Pure translation of a Responses request (and its input items) into a :class:`GenerationRequest`."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shoal.api.formats import (
    check_prompt_fits,
    SchemaCheck,
    check_schema_sizes,
    check_tool_choice,
    constrained_tools,
    json_schema_format,
    tool_param,
    validate_schemas,
)
from shoal.api.responses.items import parse_items, unseal_reasoning
from shoal.api.responses.tools import WEB_SEARCH, OfferedTools, custom_arguments, offered_tools
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
)
from shoal.errors import InvalidRequestError
from shoal.protocol.responses import (
    CustomToolCallItem,
    CustomToolCallOutputItem,
    CustomToolChoice,
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

log = logging.getLogger("shoal.responses")

LOGPROBS_INCLUDE = "message.output_text.logprobs"
ENCRYPTED_INCLUDE = "reasoning.encrypted_content"
SOURCES_INCLUDE = "web_search_call.action.sources"
KNOWN_INCLUDES = frozenset({LOGPROBS_INCLUDE, ENCRYPTED_INCLUDE, SOURCES_INCLUDE})
FORMAT_PARAM = "text.format.schema"


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
        elif isinstance(item, (FunctionCallItem, CustomToolCallItem)):
            arguments = item.arguments if isinstance(item, FunctionCallItem) else custom_arguments(item.input)
            call = ToolCall(item.call_id, item.name, arguments)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls and not reasoning:
                messages[-1] = replace(last, tool_calls=(*last.tool_calls, call))
            else:
                messages.append(Message(role="assistant", content="", tool_calls=(call,), reasoning=take_reasoning()))
        elif isinstance(item, (FunctionCallOutputItem, CustomToolCallOutputItem)):
            messages.append(Message(role="tool", content=item.text(), tool_call_id=item.call_id))
        elif isinstance(item, ReasoningItem):
            reasoning.append(item.text() or unseal_reasoning(item))
    return messages


def wants_web_search(body: ResponsesRequest) -> bool:
    """Whether ``tools`` has the built-in web search."""
    return any(isinstance(tool, WebSearchTool) for tool in body.tools or ())


def text_format(body: ResponsesRequest) -> ResponseFormat | None:
    """``text.format`` as a core format (its schema checked: 400 naming the problem)."""
    fmt = body.text.format if body.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat("json_object")
    assert fmt.name is not None and fmt.json_schema is not None  # checked by the schema
    return json_schema_format(fmt.name, fmt.json_schema, fmt.strict, fmt.description, FORMAT_PARAM)


def _tool_choice(body: ResponsesRequest, offered: OfferedTools) -> ToolChoice:
    choice = body.tool_choice
    if body.max_tool_calls == 0:
        return "none"
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return check_tool_choice(choice, offered.specs)
    if isinstance(choice, HostedToolChoice):
        if not choice.type.startswith("web_search"):
            raise InvalidRequestError(f"tool_choice forces the built-in tool '{choice.type}', which this server "
                                      "cannot run.", param="tool_choice", code="tool_unavailable")
        if not wants_web_search(body):
            raise InvalidRequestError(f"tool_choice names the built-in tool '{choice.type}', which is not in 'tools'.",
                                      param="tool_choice")
        if WEB_SEARCH not in offered.specs:
            raise InvalidRequestError(
                "tool_choice forces the web_search tool, which is not available: this server has no search provider "
                "configured. Start shoal with --web-search-url URL (or SHOAL_WEB_SEARCH_URL) pointing at a "
                "SearxNG-compatible JSON endpoint.", param="tool_choice", code="web_search_unavailable")
        return NamedTool(WEB_SEARCH.name)
    if isinstance(choice, (FunctionToolChoice, CustomToolChoice)):
        name = choice.name
    else:
        name = choice.function.name
    return check_tool_choice(NamedTool(name), offered.specs)


def check_include(body: ResponsesRequest) -> None:
    """Reject ``include`` values Shoal cannot honour, by name."""
    for value in body.include or ():
        if value not in KNOWN_INCLUDES:
            raise InvalidRequestError(f"include value '{value}' is not supported; supported: "
                                      + ", ".join(sorted(KNOWN_INCLUDES)) + ".", param="include")


def _schemas(offered: OfferedTools, fmt: ResponseFormat | None) -> list[SchemaCheck]:
    """Every schema of the request, to validate: the offered tools' parameters, then the format's."""
    out: list[SchemaCheck] = [(spec.parameters, f"function '{spec.name}'", tool_param("tools", index))
                              for index, spec in enumerate(offered.specs) if spec.parameters is not None]
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


@dataclass(frozen=True)
class Translation:
    """A request translated once: the engine request for its own messages, and the tools offered.

    The history of a previous response goes between the instructions and the input
    (:meth:`with_history`), as often as truncation needs, without translating the body again.
    """

    request: GenerationRequest
    """The engine request, its messages the instructions (if any), then ``input``."""
    offered: OfferedTools
    instructions: int = 0
    """How many of ``request.messages`` are the instructions (0 or 1)."""

    def with_history(self, history: Sequence[Message]) -> GenerationRequest:
        """The request with ``history`` after the instructions."""
        if not history:
            return self.request
        messages = self.request.messages
        return replace(self.request, messages=(*messages[:self.instructions], *history,
                                               *messages[self.instructions:]))


async def translate(body: ResponsesRequest, *, search_available: bool,
                    context_length: int | None = None) -> Translation:
    """Check the request (tools, schemas and their sizes, choice, include) and translate it, once.

    A 400 when the request's text cannot fit in ``context_length`` tokens (:func:`check_prompt_fits`);
    the schemas' validity is checked off the event loop. The tools left out (built-in tools Shoal
    cannot run) are logged as a warning.
    """
    check_prompt_fits(_texts(body), context_length)
    offered = offered_tools(body, search_available=search_available)
    if offered.dropped:
        log.warning("responses: left out tool(s) this server cannot run: %s", ", ".join(offered.dropped))
    translation = _translate(body, offered)
    request = translation.request
    fmt = request.response_format
    forced = constrained_tools(request.tools, request.tool_choice)
    sizes = [(spec.parameters, tool_param("tools", index), spec.name in forced)
             for index, spec in enumerate(offered.specs) if spec.parameters is not None]
    if fmt is not None and fmt.schema is not None:
        sizes.append((fmt.schema, FORMAT_PARAM, True))
    check_schema_sizes(sizes)
    await validate_schemas(_schemas(offered, fmt))
    return translation


def to_generation(body: ResponsesRequest, history: Sequence[Message] = (), *,
                  search_available: bool = True) -> GenerationRequest:
    """The engine-neutral request for ``body`` (``history`` from a previous response goes first).

    Checks only what it needs to build the request (tools, include, tool choice); the
    rest is :func:`translate`'s.
    """
    return _translate(body, offered_tools(body, search_available=search_available)).with_history(history)


def _translate(body: ResponsesRequest, offered: OfferedTools) -> Translation:
    check_include(body)
    messages: list[Message] = []
    if body.instructions:
        messages.append(Message(role="system", content=body.instructions))
    instructions = len(messages)
    messages.extend(input_messages(body.input))
    logprobs = LOGPROBS_INCLUDE in (body.include or ())
    sampling = SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop or ()),
        max_tokens=body.output_limit,
        logprobs=logprobs or bool(body.top_logprobs),
        top_logprobs=body.top_logprobs or 0,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
    )
    parallel = body.parallel_tool_calls if body.parallel_tool_calls is not None else True
    request = GenerationRequest(
        model=body.model,
        messages=tuple(messages),
        sampling=sampling,
        tools=offered.specs,
        tool_choice=_tool_choice(body, offered),
        # One call allowed: ask the engine for one, rather than cutting the extra ones off afterwards.
        parallel_tool_calls=parallel and body.max_tool_calls != 1,
        user=body.user,
        response_format=text_format(body),
        reasoning_effort=body.reasoning.effort if body.reasoning is not None else None,
        # A background response can be followed live later, so it is generated as a stream.
        stream=bool(body.stream or body.background),
        prompt_cache_key=body.prompt_cache_key,
    )
    return Translation(request, offered, instructions)


class History:
    """A previous response's conversation, split into turns and translated once.

    A turn starts at each user message (the first turn at the first item): truncation
    (``truncation: auto``) drops whole turns, oldest first, from both the stored items
    and their translated messages.
    """

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        starts = [0] + [i for i, item in enumerate(items) if i and _is_user_message(item)] if items else []
        typed = parse_items(items)
        bounds = list(zip(starts, [*starts[1:], len(items)]))
        self._turns = [(list(items[a:b]), input_messages(typed[a:b])) for a, b in bounds]

    def __bool__(self) -> bool:
        return bool(self._turns)

    @property
    def items(self) -> list[dict[str, Any]]:
        """The stored items of the turns kept (what the next turn's conversation starts with)."""
        return [item for stored, _ in self._turns for item in stored]

    @property
    def messages(self) -> list[Message]:
        """The turns kept, as messages."""
        return [message for _, messages in self._turns for message in messages]

    def drop_oldest_turn(self) -> bool:
        """Drop the oldest turn; False if there was none left."""
        if not self._turns:
            return False
        del self._turns[0]
        return True


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and item.get("role") == "user"
