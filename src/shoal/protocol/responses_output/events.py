"""The server-sent events of a streamed (or followed background) response, in the order they go out.

Every event starts with ``type`` and ``sequence_number`` (0, 1, 2, ... within a response).
A stream opens with ``response.created`` and ``response.in_progress`` (a background one with
``response.queued`` before them), then for each output item ``response.output_item.added``,
its content events, ``response.output_item.done``; it ends with exactly one of
:data:`TERMINAL_EVENTS`, or an ``error`` event when the response was cancelled.
"""

from __future__ import annotations

from typing import Literal, TypedDict, Union

from .objects import Logprob, OutputItem, OutputText, ReasoningText, Response, UrlCitation

TERMINAL_EVENTS: frozenset[str] = frozenset({"response.completed", "response.incomplete", "response.failed"})
"""The ``response.*`` events that end a stream."""


# -- the response as a whole -------------------------------------------------------------------

class ResponseQueuedEvent(TypedDict):
    """A background response was accepted and waits to run."""

    type: Literal["response.queued"]
    sequence_number: int
    response: Response


class ResponseCreatedEvent(TypedDict):
    """The response exists (first event of a stream, after ``response.queued`` if any)."""

    type: Literal["response.created"]
    sequence_number: int
    response: Response


class ResponseInProgressEvent(TypedDict):
    """Generation started."""

    type: Literal["response.in_progress"]
    sequence_number: int
    response: Response


class ResponseCompletedEvent(TypedDict):
    """The response finished (terminal)."""

    type: Literal["response.completed"]
    sequence_number: int
    response: Response


class ResponseIncompleteEvent(TypedDict):
    """The response was cut short by ``max_output_tokens`` (terminal)."""

    type: Literal["response.incomplete"]
    sequence_number: int
    response: Response


class ResponseFailedEvent(TypedDict):
    """The response failed; ``response.error`` says why (terminal)."""

    type: Literal["response.failed"]
    sequence_number: int
    response: Response


class ErrorEvent(TypedDict):
    """The stream ends without a response event: the response was cancelled (or failed elsewhere)."""

    type: Literal["error"]
    sequence_number: int
    code: str
    message: str
    param: str | None


# -- items -------------------------------------------------------------------------------------

class OutputItemAddedEvent(TypedDict):
    """A new item at ``output_index``, as it starts (``status: in_progress``)."""

    type: Literal["response.output_item.added"]
    sequence_number: int
    output_index: int
    item: OutputItem


class OutputItemDoneEvent(TypedDict):
    """The item at ``output_index`` is finished, in its final form."""

    type: Literal["response.output_item.done"]
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartAddedEvent(TypedDict):
    """A message's ``output_text`` or a reasoning item's ``reasoning_text`` part starts."""

    type: Literal["response.content_part.added"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText | ReasoningText


class ContentPartDoneEvent(TypedDict):
    """A content part is finished, in its final form."""

    type: Literal["response.content_part.done"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText | ReasoningText


# -- text --------------------------------------------------------------------------------------

class OutputTextDeltaEvent(TypedDict):
    """More answer text; ``logprobs`` of its tokens when ``include`` asked for them (else empty)."""

    type: Literal["response.output_text.delta"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Logprob]


class OutputTextDoneEvent(TypedDict):
    """The whole answer text of a part, with all its logprobs."""

    type: Literal["response.output_text.done"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Logprob]


class OutputTextAnnotationAddedEvent(TypedDict):
    """A citation on the text written so far (web search answers)."""

    type: Literal["response.output_text.annotation.added"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    annotation_index: int
    annotation: UrlCitation


class ReasoningTextDeltaEvent(TypedDict):
    """More reasoning text."""

    type: Literal["response.reasoning_text.delta"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningTextDoneEvent(TypedDict):
    """The whole reasoning text of a part."""

    type: Literal["response.reasoning_text.done"]
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str


# -- tool calls --------------------------------------------------------------------------------

class FunctionCallArgumentsDeltaEvent(TypedDict):
    """More of a function call's JSON arguments."""

    type: Literal["response.function_call_arguments.delta"]
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDoneEvent(TypedDict):
    """A function call's complete arguments."""

    type: Literal["response.function_call_arguments.done"]
    sequence_number: int
    item_id: str
    output_index: int
    name: str
    arguments: str


class CustomToolCallInputDeltaEvent(TypedDict):
    """A custom tool call's input (sent whole, once the call is complete)."""

    type: Literal["response.custom_tool_call_input.delta"]
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class CustomToolCallInputDoneEvent(TypedDict):
    """A custom tool call's complete input."""

    type: Literal["response.custom_tool_call_input.done"]
    sequence_number: int
    item_id: str
    output_index: int
    input: str


class WebSearchCallInProgressEvent(TypedDict):
    """A web search call started."""

    type: Literal["response.web_search_call.in_progress"]
    sequence_number: int
    item_id: str
    output_index: int


class WebSearchCallSearchingEvent(TypedDict):
    """A web search call is waiting for the search provider."""

    type: Literal["response.web_search_call.searching"]
    sequence_number: int
    item_id: str
    output_index: int


class WebSearchCallCompletedEvent(TypedDict):
    """A web search call returned its results."""

    type: Literal["response.web_search_call.completed"]
    sequence_number: int
    item_id: str
    output_index: int


WebSearchCallEvent = Union[WebSearchCallInProgressEvent, WebSearchCallSearchingEvent, WebSearchCallCompletedEvent]
"""The progress events of a web search call."""

TerminalEvent = Union[ResponseCompletedEvent, ResponseIncompleteEvent, ResponseFailedEvent]
"""An event that ends the stream with the response in it."""

ResponseStreamEvent = Union[
    ResponseQueuedEvent, ResponseCreatedEvent, ResponseInProgressEvent, ResponseCompletedEvent,
    ResponseIncompleteEvent, ResponseFailedEvent, ErrorEvent,
    OutputItemAddedEvent, OutputItemDoneEvent, ContentPartAddedEvent, ContentPartDoneEvent,
    OutputTextDeltaEvent, OutputTextDoneEvent, OutputTextAnnotationAddedEvent,
    ReasoningTextDeltaEvent, ReasoningTextDoneEvent,
    FunctionCallArgumentsDeltaEvent, FunctionCallArgumentsDoneEvent,
    CustomToolCallInputDeltaEvent, CustomToolCallInputDoneEvent,
    WebSearchCallInProgressEvent, WebSearchCallSearchingEvent, WebSearchCallCompletedEvent,
]
"""Any event of a Responses stream (``type`` tells which)."""
