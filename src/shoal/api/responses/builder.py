"""Builds a Response object and its semantic stream events from generation events.

One state machine serves both modes: streaming sends the event dicts it
returns; non-streaming discards them and returns the final snapshot. So the
streamed and the non-streamed results are the same by construction.
"""

from __future__ import annotations

import time
from typing import Any

from shoal.api.encoding import logprob_dicts, new_id
from shoal.api.responses.items import seal_reasoning
from shoal.api.responses.tools import OfferedTools, custom_input
from shoal.core.types import (
    Citation,
    Finish,
    GenerationEvent,
    ReasoningDelta,
    ServerToolCall,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from shoal.errors import ShoalError


def usage_dict(usage: Usage) -> dict[str, Any]:
    """Responses usage with cached, reasoning and tool output token details."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "tool_output_tokens": usage.tool_output_tokens,
        },
        "total_tokens": usage.total_tokens,
    }


CALL_KINDS = frozenset({"function_call", "custom_tool_call"})

SDK_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


class ResponseBuilder:
    """Feeds on generation events; keeps the response snapshot and numbers the events."""

    def __init__(self, base: dict[str, Any], *, logprobs: bool = False, seal: bool = False,
                 tools: OfferedTools | None = None, max_tool_calls: int | None = None) -> None:
        now = int(time.time())
        self.response: dict[str, Any] = {
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
        }
        self.logprobs = logprobs
        self.seal = seal
        self.tools = tools or OfferedTools()
        self.max_tool_calls = max_tool_calls
        # Calls past max_tool_calls, left out of the response (by the backend's call index).
        self._over_limit: set[int] = set()
        self.sequence = 0
        self._open: dict[str, Any] | None = None
        self._open_kind: str | None = None
        self._open_key: int | None = None
        self._call_items: dict[int, dict[str, Any]] = {}
        self._calls_open: dict[int, dict[str, Any]] = {}
        self._custom_arguments: dict[str, str] = {}

    @property
    def id(self) -> str:
        """The response id."""
        return str(self.response["id"])

    def event(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": [dict(i) for i in self.response["output"]]}

    def start(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``."""
        return [self.event("response.created", response=self.snapshot()),
                self.event("response.in_progress", response=self.snapshot())]

    # -- items -------------------------------------------------------------
    def _open_item(self, kind: str, item: dict[str, Any], key: int | None = None) -> list[dict[str, Any]]:
        out = self._close_item()
        # Items stream one at a time, as OpenAI sends them: a new call closes the one before.
        out += self._close_calls()
        if kind in CALL_KINDS:
            assert key is not None
            self._calls_open[key] = item
        else:
            self._open, self._open_kind, self._open_key = item, kind, key
        self.response["output"].append(item)
        index = len(self.response["output"]) - 1
        out.append(self.event("response.output_item.added", output_index=index, item=_copy(item)))
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            out.append(self.event("response.content_part.added", item_id=item["id"], output_index=index,
                                   content_index=0, part=dict(part)))
        elif kind == "reasoning":
            part = {"type": "reasoning_text", "text": ""}
            item["content"].append(part)
            out.append(self.event("response.content_part.added", item_id=item["id"], output_index=index,
                                   content_index=0, part=dict(part)))
        return out

    def _close_calls(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key in sorted(self._calls_open):
            item = self._calls_open.pop(key)
            out += self._finish_item(item, item["type"])
        return out

    def _close_item(self) -> list[dict[str, Any]]:
        item, kind = self._open, self._open_kind
        if item is None or kind is None:
            return []
        self._open = self._open_kind = self._open_key = None
        return self._finish_item(item, kind)

    def _finish_item(self, item: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        index = self.response["output"].index(item)
        out: list[dict[str, Any]] = []
        if kind == "message":
            part = item["content"][0]
            out.append(self.event("response.output_text.done", item_id=item["id"], output_index=index,
                                   content_index=0, text=part["text"], logprobs=part["logprobs"]))
            out.append(self.event("response.content_part.done", item_id=item["id"], output_index=index,
                                   content_index=0, part=dict(part)))
        elif kind == "reasoning":
            part = item["content"][0]
            if self.seal:
                item["encrypted_content"] = seal_reasoning(part["text"])
            out.append(self.event("response.reasoning_text.done", item_id=item["id"], output_index=index,
                                   content_index=0, text=part["text"]))
            out.append(self.event("response.content_part.done", item_id=item["id"], output_index=index,
                                   content_index=0, part=dict(part)))
        elif kind == "function_call":
            out.append(self.event("response.function_call_arguments.done", item_id=item["id"],
                                   output_index=index, name=item["name"], arguments=item["arguments"]))
        elif kind == "custom_tool_call":
            # The input is known only once the call's arguments ({"input": ...}) are whole: one delta.
            item["input"] = custom_input(self._custom_arguments.pop(item["id"], ""))
            if item["input"]:
                out.append(self.event("response.custom_tool_call_input.delta", item_id=item["id"],
                                       output_index=index, delta=item["input"]))
            out.append(self.event("response.custom_tool_call_input.done", item_id=item["id"],
                                   output_index=index, input=item["input"]))
        if item["status"] not in ("failed", "incomplete"):
            item["status"] = "completed"
        out.append(self.event("response.output_item.done", output_index=index, item=_copy(item)))
        return out

    def feed(self, event: GenerationEvent) -> list[dict[str, Any]]:
        """Stream events for one generation event."""
        out: list[dict[str, Any]] = []
        if isinstance(event, ReasoningDelta):
            if self._open_kind != "reasoning":
                out += self._open_item("reasoning", {"id": new_id("rs_"), "type": "reasoning", "summary": [],
                                                     "content": [], "status": "in_progress"})
            item = self._open
            assert item is not None
            item["content"][0]["text"] += event.text
            out.append(self.event("response.reasoning_text.delta", item_id=item["id"],
                                   output_index=len(self.response["output"]) - 1, content_index=0,
                                   delta=event.text))
        elif isinstance(event, TextDelta):
            if self._open_kind != "message":
                out += self._open_item("message", {"id": new_id("msg_"), "type": "message", "role": "assistant",
                                                   "status": "in_progress", "content": []})
            item = self._open
            assert item is not None
            part = item["content"][0]
            part["text"] += event.text
            lps = logprob_dicts(event.logprobs) if self.logprobs else []
            part["logprobs"].extend(lps)
            out.append(self.event("response.output_text.delta", item_id=item["id"],
                                   output_index=len(self.response["output"]) - 1, content_index=0,
                                   delta=event.text, logprobs=lps))
        elif isinstance(event, ToolCallDelta):
            out += self._tool_call(event)
        elif isinstance(event, ServerToolCall):
            out += self._server_tool_call(event)
        elif isinstance(event, Citation):
            out += self._citation(event)
        elif isinstance(event, Finish):
            out += self.finish(event)
        return out

    def _tool_call(self, event: ToolCallDelta) -> list[dict[str, Any]]:
        """A fragment of a call: a ``function_call`` item, or a ``custom_tool_call`` for a custom tool."""
        out: list[dict[str, Any]] = []
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
            item = self._new_call(event)
            self._call_items[event.index] = item
            out += self._open_item(item["type"], item, key=event.index)
        if event.name and not item["name"]:
            item["name"] = event.name
        if not event.arguments:
            return out
        if item["type"] == "custom_tool_call":
            self._custom_arguments[item["id"]] = self._custom_arguments.get(item["id"], "") + event.arguments
            return out
        item["arguments"] += event.arguments
        out.append(self.event("response.function_call_arguments.delta", item_id=item["id"],
                               output_index=self.response["output"].index(item), delta=event.arguments))
        return out

    def _new_call(self, event: ToolCallDelta) -> dict[str, Any]:
        """The item of a new call, shaped by the tool it calls (namespace, custom)."""
        shape = self.tools.shape(event.name or "")
        call_id = event.id or new_id("call_")
        item: dict[str, Any]
        if shape.kind == "custom":
            item = {"id": new_id("ctc_"), "type": "custom_tool_call", "status": "in_progress", "call_id": call_id,
                    "name": event.name or "", "input": ""}
        else:
            item = {"id": new_id("fc_"), "type": "function_call", "status": "in_progress", "call_id": call_id,
                    "name": event.name or "", "arguments": ""}
        if shape.namespace is not None:
            item["namespace"] = shape.namespace
        return item

    def _server_tool_call(self, event: ServerToolCall) -> list[dict[str, Any]]:
        """A built-in web search: its item, and in_progress → searching → completed events."""
        out: list[dict[str, Any]] = []
        if not (self._open_kind == "web_search_call" and self._open is not None and self._open["id"] == event.id):
            out += self._open_item("web_search_call", {"id": event.id, "type": "web_search_call",
                                                       "status": "in_progress",
                                                       "action": {"type": "search", "query": event.query}})
        item = self._open
        assert item is not None
        index = len(self.response["output"]) - 1
        if event.sources:
            item["action"]["sources"] = [{"type": "url", "url": s.url} for s in event.sources]
        if event.status == "failed":
            item["status"] = "failed"
            return out + self._close_item()
        item["status"] = event.status
        out.append(self.event(f"response.web_search_call.{event.status}", item_id=item["id"], output_index=index))
        if event.status == "completed":
            out += self._close_item()
        return out

    def _citation(self, event: Citation) -> list[dict[str, Any]]:
        """A ``url_citation`` annotation on the answer being written."""
        item = self._open
        if self._open_kind != "message" or item is None:
            return []
        part = item["content"][0]
        annotation = {"type": "url_citation", "start_index": event.start_index, "end_index": event.end_index,
                      "url": event.url, "title": event.title}
        part["annotations"].append(annotation)
        return [self.event("response.output_text.annotation.added", item_id=item["id"],
                           output_index=len(self.response["output"]) - 1, content_index=0,
                           annotation_index=len(part["annotations"]) - 1, annotation=dict(annotation))]

    def finish(self, event: Finish) -> list[dict[str, Any]]:
        """Close the open items; ``response.completed`` or ``response.incomplete``."""
        if event.reason == "length":
            # Cut by max_output_tokens: the items being written are incomplete, as OpenAI marks them.
            for item in [self._open, *self._calls_open.values()]:
                if item is not None:
                    item["status"] = "incomplete"
        out = self._close_item() + self._close_calls()
        self.response["usage"] = usage_dict(event.usage)
        self.response["completed_at"] = int(time.time())
        if event.reason == "length":
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
            kind = "response.incomplete"
        else:
            self.response["status"] = "completed"
            kind = "response.completed"
        self.response["choices"] = [_choice(self.response["output"], event.reason)]
        out.append(self.event(kind, response=self.snapshot()))
        return out

    def fail(self, error: ShoalError) -> list[dict[str, Any]]:
        """Close the open item as incomplete and end with ``response.failed``."""
        for item in [self._open, *self._calls_open.values()]:
            if item is not None:
                item["status"] = "incomplete"
        self._open = self._open_kind = self._open_key = None
        self._calls_open.clear()
        self.response["status"] = "failed"
        # ResponseError.code is a closed list in the SDK: map ours onto it.
        code = error.code if error.code in SDK_ERROR_CODES else (
            "invalid_prompt" if 400 <= error.status_code < 500 else "server_error")
        self.response["error"] = {"code": code, "message": error.message}
        self.response["choices"] = [_choice(self.response["output"], "error")]
        return [self.event("response.failed", response=self.snapshot())]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    copied = dict(item)
    if "content" in copied:
        copied["content"] = [dict(p, **{k: list(p[k]) for k in ("logprobs", "annotations") if k in p})
                             for p in copied["content"]]
    if "action" in copied:
        copied["action"] = dict(copied["action"])
    return copied


def _choice(output: list[dict[str, Any]], finish_reason: str) -> dict[str, Any]:
    """DigitalOcean's chat-style mirror of the output."""
    text = "".join(part["text"] for item in output if item["type"] == "message" for part in item["content"])
    reasoning = "".join(part["text"] for item in output if item["type"] == "reasoning" for part in item["content"])
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning:
        message["reasoning_content"] = reasoning
    calls = [i for i in output if i["type"] in CALL_KINDS]
    if calls:
        message["tool_calls"] = [{"id": c["call_id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c.get("arguments", c.get("input"))}}
                                 for c in calls]
    return {"index": 0, "finish_reason": finish_reason, "message": message}
