"""Builds a Response object and its stream events from generation events; owns the response's status.

One state machine serves both modes: streaming sends the events it returns;
non-streaming discards them and returns the final snapshot. So the streamed and
the non-streamed results are the same by construction.

The status moves only through the methods below, and only along these edges
(anything else raises :class:`IllegalTransition`, a bug in the caller)::

    in_progress (new) ──queue()──► queued
    in_progress/queued ──start()──► in_progress ──feed(Finish)──► completed | incomplete
    in_progress/queued ──fail(e)──► failed        ──abort()/cancel()──► cancelled (or failed elsewhere)
    completed/incomplete ──unkept(e)──► failed   (the result could not be stored: never a success)
"""

from __future__ import annotations

import time
from typing import Any, Literal, cast

from shoal.api.encoding import logprob_dicts, new_id
from shoal.api.responses.items import seal_reasoning
from shoal.api.responses.output import choice, frozen, new_call, usage_dict
from shoal.api.responses.tools import OfferedTools, custom_input
from shoal.core.types import (
    Citation,
    Finish,
    GenerationEvent,
    ReasoningDelta,
    ServerToolCall,
    TextDelta,
    ToolCallDelta,
)
from shoal.errors import ShoalError
from shoal.protocol import responses_output as wire

Events = list[wire.ResponseStreamEvent]

SDK_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})

ACTIVE: frozenset[str] = frozenset({"queued", "in_progress"})


class IllegalTransition(RuntimeError):
    """A status change the response lifecycle does not allow."""


def cancelled_copy(body: wire.Response) -> wire.Response:
    """A stored response (running on another replica) as cancelled: the one status write outside a builder."""
    return {**body, "status": "cancelled"}


class ResponseBuilder:
    """Feeds on generation events; keeps the response snapshot, numbers the events, moves the status."""

    def __init__(self, base: dict[str, Any], *, logprobs: bool = False, seal: bool = False,
                 tools: OfferedTools | None = None, max_tool_calls: int | None = None) -> None:
        now = int(time.time())
        self.response = cast(wire.Response, {
            "id": base.get("id") or new_id("resp_"),
            "object": "response",
            "created_at": now,
            "created": now,
            "status": "in_progress",
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "output": [],
            "usage": None,
            **{k: v for k, v in base.items() if k != "id"},
        })
        self.logprobs = logprobs
        self.seal = seal
        self.tools = tools or OfferedTools()
        self.max_tool_calls = max_tool_calls
        self.sequence = 0
        self._created = False  # response.created went out
        self._queued = False
        # Calls past max_tool_calls, left out of the response (by the backend's call index).
        self._over_limit: set[int] = set()
        self._open: wire.OutputItem | None = None
        self._text: wire.OutputText | None = None  # the open message's part (the hot path)
        self._thought: wire.ReasoningText | None = None  # the open reasoning item's part
        self._call_items: dict[int, wire.CallItem] = {}
        self._calls_open: dict[int, wire.CallItem] = {}
        self._custom_arguments: dict[str, str] = {}

    @property
    def id(self) -> str:
        """The response id."""
        return self.response["id"]

    @property
    def status(self) -> wire.ResponseStatus:
        """The response's status (changed only by this builder's transitions)."""
        return self.response["status"]

    @property
    def active(self) -> bool:
        """Queued or in progress: not ended yet."""
        return self.response["status"] in ACTIVE

    def answered_by(self, model: str) -> None:
        """The model that serves the response (behind a router, the deployment picked decides)."""
        self.response["model"] = model

    def _seq(self) -> int:
        number = self.sequence
        self.sequence = number + 1
        return number

    def snapshot(self) -> wire.Response:
        """A copy of the response that later events do not change."""
        return {**self.response, "output": [cast(wire.OutputItem, dict(i)) for i in self.response["output"]]}

    # -- transitions -------------------------------------------------------
    def _move(self, to: wire.ResponseStatus, allowed: frozenset[str] | set[str]) -> None:
        current = self.response["status"]
        if current not in allowed:
            raise IllegalTransition(f"response {self.id}: {current} -> {to}")
        self.response["status"] = to

    def queue(self) -> wire.ResponseQueuedEvent:
        """Background mode: ``queued`` before anything runs; ``response.queued``."""
        if self._created or self._queued:
            raise IllegalTransition(f"response {self.id}: cannot be queued once {self.status}")
        self._move("queued", {"in_progress"})
        self._queued = True
        return {"type": "response.queued", "sequence_number": self._seq(), "response": self.snapshot()}

    def _announce(self) -> wire.ResponseCreatedEvent:
        if self._created:
            raise IllegalTransition(f"response {self.id} was already started")
        self._created = True
        return {"type": "response.created", "sequence_number": self._seq(), "response": self.snapshot()}

    def start(self) -> list[wire.ResponseCreatedEvent | wire.ResponseInProgressEvent]:
        """Generation starts (``queued`` → ``in_progress``): ``response.created`` and ``response.in_progress``."""
        if self._created:
            raise IllegalTransition(f"response {self.id} was already started")
        self._move("in_progress", ACTIVE)
        created = self._announce()
        return [created, {"type": "response.in_progress", "sequence_number": self._seq(),
                          "response": self.snapshot()}]

    def fail(self, error: ShoalError) -> Events:
        """``failed``: close the open items as incomplete and end with ``response.failed``.

        A response that fails before it started still opens with ``response.created``.
        """
        out: Events = [] if self._created else [self._announce()]
        self._move("failed", ACTIVE)
        for item in [self._open, *self._calls_open.values()]:
            if item is not None:
                item["status"] = "incomplete"
        self._open = self._text = self._thought = None
        self._calls_open.clear()
        out.append(self._failed(error))
        return out

    def unkept(self, error: ShoalError) -> wire.ResponseFailedEvent:
        """A finished response that could not be stored is ``failed`` (its terminal event had not gone out)."""
        self._move("failed", {"completed", "incomplete"})
        return self._failed(error)

    def _failed(self, error: ShoalError) -> wire.ResponseFailedEvent:
        # ResponseError.code is a closed list in the SDK: map ours onto it.
        code = error.code if error.code in SDK_ERROR_CODES else (
            "invalid_prompt" if 400 <= error.status_code < 500 else "server_error")
        self.response["error"] = {"code": code, "message": error.message}
        self.response["choices"] = [choice(self.response["output"], "error")]
        return {"type": "response.failed", "sequence_number": self._seq(), "response": self.snapshot()}

    def abort(self, status: Literal["cancelled", "failed"], code: str, message: str) -> wire.ErrorEvent:
        """End without a response event (cancelled, or failed by another replica): an ``error`` event."""
        self._move(status, ACTIVE)
        return {"type": "error", "sequence_number": self._seq(), "code": code, "message": message, "param": None}

    def cancel(self) -> wire.ErrorEvent:
        """``cancelled`` (by the client, or its stream went away)."""
        return self.abort("cancelled", "response_cancelled", "The response was cancelled.")

    def finish(self, event: Finish) -> Events:
        """Close the open items; ``completed`` (``response.completed``) or ``incomplete`` (``response.incomplete``)."""
        length = event.reason == "length"
        if length:
            # Cut by max_output_tokens: the items being written are incomplete, as OpenAI marks them.
            for item in [self._open, *self._calls_open.values()]:
                if item is not None:
                    item["status"] = "incomplete"
        out = self._close_item() + self._close_calls()
        self._move("incomplete" if length else "completed", {"in_progress"})
        self.response["usage"] = usage_dict(event.usage)
        self.response["completed_at"] = int(time.time())
        if length:
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
        self.response["choices"] = [choice(self.response["output"], event.reason)]
        terminal: wire.TerminalEvent
        if length:
            terminal = {"type": "response.incomplete", "sequence_number": self._seq(), "response": self.snapshot()}
        else:
            terminal = {"type": "response.completed", "sequence_number": self._seq(), "response": self.snapshot()}
        out.append(terminal)
        return out

    # -- items -------------------------------------------------------------
    def _open_item(self, item: wire.OutputItem, key: int | None = None) -> Events:
        out = self._close_item()
        # Items stream one at a time, as OpenAI sends them: a new call closes the one before.
        out += self._close_calls()
        output = self.response["output"]
        output.append(item)
        index = len(output) - 1
        added: wire.OutputItemAddedEvent = {"type": "response.output_item.added", "sequence_number": self._seq(),
                                       "output_index": index, "item": frozen(item)}
        out.append(added)
        if item["type"] == "function_call" or item["type"] == "custom_tool_call":
            assert key is not None
            self._calls_open[key] = item
            return out
        self._open = item
        part: wire.OutputText | wire.ReasoningText
        if item["type"] == "message":
            part = self._text = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
        elif item["type"] == "reasoning":
            part = self._thought = {"type": "reasoning_text", "text": ""}
            item["content"].append(part)
        else:
            return out
        part_added: wire.ContentPartAddedEvent = {
            "type": "response.content_part.added", "sequence_number": self._seq(), "item_id": item["id"],
            "output_index": index, "content_index": 0, "part": cast(Any, dict(part))}
        out.append(part_added)
        return out

    def _close_calls(self) -> Events:
        out: Events = []
        for key in sorted(self._calls_open):
            out += self._finish_item(self._calls_open.pop(key))
        return out

    def _close_item(self) -> Events:
        item = self._open
        if item is None:
            return []
        self._open = self._text = self._thought = None
        return self._finish_item(item)

    def _finish_item(self, item: wire.OutputItem) -> Events:
        index = self.response["output"].index(item)
        out: Events = []
        item_id = item["id"]
        if item["type"] == "message":
            text = item["content"][0]
            out.append({"type": "response.output_text.done", "sequence_number": self._seq(), "item_id": item_id,
                        "output_index": index, "content_index": 0, "text": text["text"],
                        "logprobs": text["logprobs"]})
            out.append(self._part_done(item_id, index, text))
        elif item["type"] == "reasoning":
            thought = item["content"][0]
            if self.seal:
                item["encrypted_content"] = seal_reasoning(thought["text"])
            out.append({"type": "response.reasoning_text.done", "sequence_number": self._seq(), "item_id": item_id,
                        "output_index": index, "content_index": 0, "text": thought["text"]})
            out.append(self._part_done(item_id, index, thought))
        elif item["type"] == "function_call":
            out.append({"type": "response.function_call_arguments.done", "sequence_number": self._seq(),
                        "item_id": item_id, "output_index": index, "name": item["name"],
                        "arguments": item["arguments"]})
        elif item["type"] == "custom_tool_call":
            # The input is known only once the call's arguments ({"input": ...}) are whole: one delta.
            item["input"] = custom_input(self._custom_arguments.pop(item_id, ""))
            if item["input"]:
                out.append({"type": "response.custom_tool_call_input.delta", "sequence_number": self._seq(),
                            "item_id": item_id, "output_index": index, "delta": item["input"]})
            out.append({"type": "response.custom_tool_call_input.done", "sequence_number": self._seq(),
                        "item_id": item_id, "output_index": index, "input": item["input"]})
        if item["status"] not in ("failed", "incomplete"):
            item["status"] = "completed"
        done: wire.OutputItemDoneEvent = {"type": "response.output_item.done", "sequence_number": self._seq(),
                                     "output_index": index, "item": frozen(item)}
        out.append(done)
        return out

    def _part_done(self, item_id: str, index: int,
                   part: wire.OutputText | wire.ReasoningText) -> wire.ContentPartDoneEvent:
        return {"type": "response.content_part.done", "sequence_number": self._seq(), "item_id": item_id,
                "output_index": index, "content_index": 0, "part": cast(Any, dict(part))}

    def feed(self, event: GenerationEvent) -> Events:
        """Stream events for one generation event."""
        if isinstance(event, TextDelta):
            out: Events = []
            if self._text is None:
                out += self._open_item({"id": new_id("msg_"), "type": "message", "role": "assistant",
                                        "status": "in_progress", "content": []})
            item, part = self._open, self._text
            assert item is not None and part is not None
            part["text"] += event.text
            lps: list[wire.Logprob] = cast(list[wire.Logprob], logprob_dicts(event.logprobs)) if self.logprobs else []
            part["logprobs"].extend(lps)
            delta: wire.OutputTextDeltaEvent = {
                "type": "response.output_text.delta", "sequence_number": self._seq(), "item_id": item["id"],
                "output_index": len(self.response["output"]) - 1, "content_index": 0, "delta": event.text,
                "logprobs": lps}
            out.append(delta)
            return out
        if isinstance(event, ReasoningDelta):
            out = []
            if self._thought is None:
                out += self._open_item({"id": new_id("rs_"), "type": "reasoning", "summary": [], "content": [],
                                        "status": "in_progress"})
            item, thought = self._open, self._thought
            assert item is not None and thought is not None
            thought["text"] += event.text
            reasoning: wire.ReasoningTextDeltaEvent = {
                "type": "response.reasoning_text.delta", "sequence_number": self._seq(), "item_id": item["id"],
                "output_index": len(self.response["output"]) - 1, "content_index": 0, "delta": event.text}
            out.append(reasoning)
            return out
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event)
        if isinstance(event, ServerToolCall):
            return self._server_tool_call(event)
        if isinstance(event, Citation):
            return self._citation(event)
        if isinstance(event, Finish):
            return self.finish(event)
        return []

    def _tool_call(self, event: ToolCallDelta) -> Events:
        """A fragment of a call: a ``function_call`` item, or a ``custom_tool_call`` for a custom tool."""
        out: Events = []
        if event.index in self._over_limit:
            return out
        late = self._call_items.get(event.index)
        if late is not None and event.index not in self._calls_open:
            # An upstream interleaved its calls (0, 1, 0): call 0's item is already done, so the
            # fragment can only be folded into the final response, not streamed.
            if late["type"] == "function_call":
                late["arguments"] += event.arguments
            return out
        item = self._calls_open.get(event.index)
        if item is None:
            if self.max_tool_calls is not None and len(self._call_items) >= self.max_tool_calls:
                self._over_limit.add(event.index)
                return out
            item = new_call(event, self.tools.shape(event.name or ""))
            self._call_items[event.index] = item
            out += self._open_item(item, key=event.index)
        if event.name and not item["name"]:
            item["name"] = event.name
        if not event.arguments:
            return out
        if item["type"] == "custom_tool_call":
            self._custom_arguments[item["id"]] = self._custom_arguments.get(item["id"], "") + event.arguments
            return out
        item["arguments"] += event.arguments
        out.append({"type": "response.function_call_arguments.delta", "sequence_number": self._seq(),
                    "item_id": item["id"], "output_index": self.response["output"].index(item),
                    "delta": event.arguments})
        return out

    def _server_tool_call(self, event: ServerToolCall) -> Events:
        """A built-in web search: its item, and in_progress → searching → completed events."""
        out: Events = []
        item = self._open
        if item is None or item["type"] != "web_search_call" or item["id"] != event.id:
            search: wire.WebSearchCall = {"id": event.id, "type": "web_search_call", "status": "in_progress",
                                     "action": {"type": "search", "query": event.query}}
            out += self._open_item(search)
            item = search
        assert item["type"] == "web_search_call"
        index = len(self.response["output"]) - 1
        if event.sources:
            item["action"]["sources"] = [{"type": "url", "url": s.url} for s in event.sources]
        if event.status == "failed":
            item["status"] = "failed"
            return out + self._close_item()
        item["status"] = cast(Any, event.status)
        out.append(cast(wire.ResponseStreamEvent, {"type": f"response.web_search_call.{event.status}",
                                              "sequence_number": self._seq(), "item_id": item["id"],
                                              "output_index": index}))
        if event.status == "completed":
            out += self._close_item()
        return out

    def _citation(self, event: Citation) -> Events:
        """A ``url_citation`` annotation on the answer being written."""
        item, part = self._open, self._text
        if item is None or part is None:
            return []
        annotation: wire.UrlCitation = {"type": "url_citation", "start_index": event.start_index,
                                   "end_index": event.end_index, "url": event.url, "title": event.title}
        part["annotations"].append(annotation)
        added: wire.OutputTextAnnotationAddedEvent = {
            "type": "response.output_text.annotation.added", "sequence_number": self._seq(), "item_id": item["id"],
            "output_index": len(self.response["output"]) - 1, "content_index": 0,
            "annotation_index": len(part["annotations"]) - 1, "annotation": {**annotation}}
        return [added]
