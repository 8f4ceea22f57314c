"""The Response object and its output items (content parts, usage, error).

Plain :class:`~typing.TypedDict`: see the package docstring for why.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, Union

ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
"""The lifecycle of a response (transitions: ``ResponseBuilder``)."""

ItemStatus = Literal["in_progress", "searching", "completed", "incomplete", "failed"]
"""An output item's status (``searching`` and ``failed``: web search calls only)."""

TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "incomplete", "failed", "cancelled"})
"""Statuses a response never leaves (but see ``ResponseBuilder.unkept``)."""


# -- content parts -----------------------------------------------------------------------------

class TopLogprob(TypedDict):
    """One alternative token at a position."""

    token: str
    logprob: float
    bytes: list[int]


class Logprob(TypedDict):
    """A sampled token's log probability, with the alternatives asked for (``top_logprobs``)."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class UrlCitation(TypedDict):
    """A ``url_citation`` annotation: the span ``[start_index, end_index)`` of the text cites ``url``."""

    type: Literal["url_citation"]
    start_index: int
    end_index: int
    url: str
    title: str


class OutputText(TypedDict):
    """The ``output_text`` part of an assistant message."""

    type: Literal["output_text"]
    text: str
    annotations: list[UrlCitation]
    logprobs: list[Logprob]


class ReasoningText(TypedDict):
    """The ``reasoning_text`` part of a reasoning item (the model's thinking, in the clear)."""

    type: Literal["reasoning_text"]
    text: str


# -- output items ------------------------------------------------------------------------------

class OutputMessage(TypedDict):
    """An assistant ``message`` item; Shoal writes one ``output_text`` part."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    status: ItemStatus
    content: list[OutputText]


class ReasoningItem(TypedDict):
    """A ``reasoning`` item; ``encrypted_content`` only when ``include`` asked for it."""

    id: str
    type: Literal["reasoning"]
    summary: list[Any]
    content: list[ReasoningText]
    status: ItemStatus
    encrypted_content: NotRequired[str]


class FunctionCall(TypedDict):
    """A ``function_call`` item; ``namespace`` when the function is a member of a namespace tool."""

    id: str
    type: Literal["function_call"]
    status: ItemStatus
    call_id: str
    name: str
    arguments: str
    namespace: NotRequired[str]


class CustomToolCall(TypedDict):
    """A ``custom_tool_call`` item: the free-form ``input`` of a custom tool."""

    id: str
    type: Literal["custom_tool_call"]
    status: ItemStatus
    call_id: str
    name: str
    input: str
    namespace: NotRequired[str]


class UrlSource(TypedDict):
    """A page a web search returned."""

    type: Literal["url"]
    url: str


class SearchAction(TypedDict):
    """What a web search call did: its query and (if ``include`` asked) the sources found."""

    type: Literal["search"]
    query: str
    sources: NotRequired[list[UrlSource]]


class WebSearchCall(TypedDict):
    """A ``web_search_call`` item: a search Shoal ran for the model (the built-in tool)."""

    id: str
    type: Literal["web_search_call"]
    status: ItemStatus
    action: SearchAction


OutputItem = Union[OutputMessage, ReasoningItem, FunctionCall, CustomToolCall, WebSearchCall]
"""Any item of ``Response.output``."""

CallItem = Union[FunctionCall, CustomToolCall]
"""The items the client must act on (its tools' calls)."""


# -- the Response object -----------------------------------------------------------------------

class InputTokensDetails(TypedDict):
    """Input tokens served from the prompt cache (``cache_write_tokens``: always 0 here)."""

    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    """Output tokens spent thinking, and tokens of server-run tool output."""

    reasoning_tokens: int
    tool_output_tokens: int


class ResponseUsage(TypedDict):
    """Token counts of a finished response."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(TypedDict):
    """Why a response failed; ``code`` is one of the SDK's (``server_error``, ``invalid_prompt``, ...)."""

    code: str
    message: str


class IncompleteDetails(TypedDict):
    """Why a response is incomplete."""

    reason: Literal["max_output_tokens"]


class ChoiceMessage(TypedDict):
    """The assistant message of the chat-style mirror."""

    role: Literal["assistant"]
    content: str
    reasoning_content: NotRequired[str]
    tool_calls: NotRequired[list[dict[str, Any]]]


class Choice(TypedDict):
    """DigitalOcean's chat-style mirror of the output (``Response.choices``)."""

    index: int
    finish_reason: str
    message: ChoiceMessage


class Response(TypedDict):
    """The Response object, as created, streamed, returned and stored.

    The fields after ``usage`` repeat the request back (``api/responses/echo.py``);
    ``choices`` appears once the response has ended.
    """

    id: str
    object: Literal["response"]
    created_at: int
    created: int
    status: ResponseStatus
    completed_at: int | None
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    output: list[OutputItem]
    usage: ResponseUsage | None
    model: str
    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: dict[str, Any]
    store: bool
    background: bool
    temperature: float
    top_p: float
    text: dict[str, Any]
    tool_choice: Any
    tools: list[dict[str, Any]]
    top_logprobs: int
    truncation: str
    user: str | None
    presence_penalty: float
    frequency_penalty: float
    max_tool_calls: int | None
    service_tier: str
    safety_identifier: str | None
    prompt_cache_key: str | None
    choices: NotRequired[list[Choice]]
