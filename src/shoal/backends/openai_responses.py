"""An OpenAI-compatible upstream's native ``/v1/responses`` (vLLM, llama-server, OpenAI), as chat chunks.

A deployment with ``api: responses`` sends each generation to the upstream's
Responses endpoint instead of ``/chat/completions``. The upstream's answer (a
stream of semantic events, or one response object) is turned into the same
chat chunk dicts the chat path reads, so the shared translator gives the same
core events: text with logprobs, reasoning, function calls (and calls a small
model wrote as text), usage with cached and reasoning tokens, and the finish
reason. Shoal keeps conversation state itself, so nothing is stored upstream
(``store: false``) and every request carries its whole input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from shoal.core.backend import BackendFailure
from shoal.backends.openai_compat import OpenAICompatBackend
from shoal.backends.openai_wire.body import sampling_fields, tool_fields
from shoal.backends.upstream import dropped
from shoal.core.types import GenerationRequest, ImageInput, Message

_REASONING_DELTAS = ("response.reasoning_text.delta", "response.reasoning_summary_text.delta",
                     "response.reasoning.delta")
"""Reasoning arrives as raw text (vLLM, gpt-oss), as a summary (OpenAI), or in vLLM's older event."""


def _input_items(msg: Message) -> list[dict[str, Any]]:
    """One conversation turn as Responses input items (in their typed form, which every server parses)."""
    if msg.role == "tool":
        return [{"type": "function_call_output", "call_id": msg.tool_call_id or "", "output": msg.content}]
    items: list[dict[str, Any]] = []
    if msg.role == "assistant":
        # Reasoning is not replayed: OpenAI accepts only its own reasoning items (ids, encrypted content).
        if msg.content:
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": msg.content}]})
        items += [{"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
                  for c in msg.tool_calls]
        return items
    parts: list[dict[str, Any]] = []
    for part in msg.parts or (msg.content,):
        if isinstance(part, ImageInput):
            parts.append({"type": "input_image", "image_url": part.url, "detail": part.detail})
        elif part:
            parts.append({"type": "input_text", "text": part})
    return [{"type": "message", "role": msg.role, "content": parts}]


def responses_body(request: GenerationRequest, model: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``/responses`` body of ``request`` for the upstream's ``model``, streamed as the caller is.

    ``stop`` and ``seed`` are not in OpenAI's Responses API; they are sent only
    when the caller set them (vLLM and llama-server honour them).
    """
    body: dict[str, Any] = {
        "model": model,
        "input": [item for m in request.messages for item in _input_items(m)],
        "stream": request.stream,
        "store": False,
    }
    for name, value in (("user", request.user), ("prompt_cache_key", request.prompt_cache_key)):
        if value is not None:
            body[name] = value
    if request.reasoning_effort:
        body["reasoning"] = {"effort": request.reasoning_effort}
    body.update(sampling_fields(request, api="responses"))
    body.update(tool_fields(request.tools, request.tool_choice, request.parallel_tool_calls, api="responses"))
    if extra:
        body.update(extra)
    return body


def _usage(response: dict[str, Any]) -> dict[str, Any] | None:
    """A Responses ``usage`` in the chat shape the translator reads."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    out: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens") or 0,
        "completion_tokens": usage.get("output_tokens") or 0,
        "prompt_tokens_details": {"cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens")
                                  or 0},
    }
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def _finish_reason(response: dict[str, Any]) -> str:
    """``length`` / ``content_filter`` for an incomplete response, else ``stop`` (calls make it ``tool_calls``)."""
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "stop"


def _choice(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                         "logprobs": {"content": logprobs} if logprobs else None}]}


def _closing(response: dict[str, Any], delta: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
    """The last chunk of a finished response: ``delta``, the finish reason and the usage."""
    chunk = _choice(delta, _finish_reason(response), logprobs)
    usage = _usage(response)
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _failure(who: str, response_or_event: dict[str, Any]) -> BackendFailure:
    err = response_or_event.get("error") or response_or_event
    message = err.get("message") if isinstance(err, dict) else str(err)
    return BackendFailure(f"{who} failed while answering: {message or 'unknown error'}", code="upstream_error")


def whole_response_chunk(response: dict[str, Any]) -> dict[str, Any]:
    """A complete response object as one chat chunk: its reasoning, text and calls in one delta."""
    reasoning: list[str] = []
    text: list[str] = []
    logprobs: list[Any] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "reasoning":
            parts = item.get("content") or item.get("summary") or ()
            reasoning += [p.get("text") or "" for p in parts if isinstance(p, dict)]
        elif kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") in ("output_text", "refusal"):
                    text.append(part.get("text") or part.get("refusal") or "")
                    logprobs += part.get("logprobs") or ()
        elif kind == "function_call":
            calls.append({"index": len(calls), "id": item.get("call_id"), "type": "function",
                          "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}})
    delta: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if reasoning:
        delta["reasoning_content"] = "".join(reasoning)
    if calls:
        delta["tool_calls"] = calls
    return _closing(response, delta, logprobs)


def _call_keys(item_id: Any, output_index: Any) -> list[str]:
    """The keys a call is found by: its item id and its output index, where the server sent them."""
    keys = [f"id:{item_id}"] if item_id is not None else []
    if output_index is not None:
        keys.append(f"at:{output_index}")
    return keys


class ResponsesEvents:
    """Turns one upstream's stream of Responses events into chat chunks (None when the response ended).

    Function calls are numbered in the order they start and matched to their
    argument deltas by item id (llama-server sends no ``output_index``). The
    first kind of reasoning event seen is the one relayed, so a server that
    sends raw text and a summary (or vLLM's old and new events) is not doubled.
    """

    def __init__(self, who: str) -> None:
        self.who = who
        self._calls: dict[str, int] = {}
        """Call index by item id and by output index (either may be missing)."""
        self._count = 0
        self._with_args: set[int] = set()
        self._reasoning_kind: str | None = None

    def _call_index(self, event: dict[str, Any]) -> int | None:
        for key in _call_keys(event.get("item_id"), event.get("output_index")):
            if key in self._calls:
                return self._calls[key]
        return None

    def chunk(self, event: dict[str, Any]) -> dict[str, Any]:
        """The chat chunk of one event ({} when it carries nothing for the answer)."""
        kind = event.get("type")
        if kind == "response.output_text.delta":
            return _choice({"content": event.get("delta") or ""}, logprobs=event.get("logprobs"))
        if kind in _REASONING_DELTAS:
            return self._reasoning(kind, event.get("delta"))
        if kind == "response.output_item.added":
            return self._call_added(event)
        if kind == "response.function_call_arguments.delta":
            return self._arguments(self._call_index(event), event.get("delta") or "")
        if kind == "response.output_item.done":
            return self._call_done(event)
        if kind in ("response.completed", "response.incomplete"):
            return _closing(event.get("response") or {}, {})
        if kind == "response.failed":
            raise _failure(self.who, event.get("response") or {})
        if kind == "error":
            raise _failure(self.who, event)
        return {}

    def _reasoning(self, kind: str, delta: Any) -> dict[str, Any]:
        self._reasoning_kind = self._reasoning_kind or kind
        if isinstance(delta, dict):  # vLLM's old event: {"content": "..."}
            delta = delta.get("content") or delta.get("text")
        return _choice({"reasoning_content": delta}) if kind == self._reasoning_kind and delta else {}

    def _call_added(self, event: dict[str, Any]) -> dict[str, Any]:
        item = event.get("item") or {}
        if item.get("type") != "function_call":
            return {}
        index = self._count
        self._count += 1
        for key in _call_keys(item.get("id"), event.get("output_index")):
            self._calls[key] = index
        return _choice({"tool_calls": [{"index": index, "id": item.get("call_id"), "type": "function",
                                        "function": {"name": item.get("name"), "arguments": ""}}]})

    def _arguments(self, index: int | None, arguments: str) -> dict[str, Any]:
        if index is None or not arguments:
            return {}
        self._with_args.add(index)
        return _choice({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})

    def _call_done(self, event: dict[str, Any]) -> dict[str, Any]:
        """A call's arguments when the server sent them whole here rather than as deltas."""
        item = event.get("item") or {}
        index = self._call_index({"item_id": item.get("id"), "output_index": event.get("output_index")})
        if item.get("type") != "function_call" or index in self._with_args:
            return {}
        return self._arguments(index, item.get("arguments") or "")


class OpenAIResponsesBackend(OpenAICompatBackend):
    """Serves one catalog model from an upstream's native ``/responses`` endpoint."""

    path = "responses"

    def __repr__(self) -> str:
        return f"OpenAIResponsesBackend({self.name!r}, {self.config.base_url!r})"

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The Responses body of ``request``."""
        return responses_body(request, self.config.model, self.config.extra_body)

    async def _answer(self, response: Any) -> dict[str, Any]:
        """A whole response as one chat chunk."""
        answer = await self.http.json_body(response)
        if not isinstance(answer, dict) or not isinstance(answer.get("output"), list):
            raise dropped(self.http.who, "malformed answer")
        if answer.get("status") == "failed":
            raise _failure(self.http.who, answer)
        return whole_response_chunk(answer)

    async def _chunks(self, response: Any) -> AsyncIterator[dict[str, Any] | None]:
        """A streamed response as chat chunks, then None once it completed."""
        events = ResponsesEvents(self.http.who)
        async for _, data in self.http.sse(response):
            try:
                event = orjson.loads(data)
            except ValueError as exc:
                raise dropped(self.http.who, "malformed event") from exc
            if not isinstance(event, dict):
                continue
            chunk = events.chunk(event)
            if chunk:
                yield chunk
            if event.get("type") in ("response.completed", "response.incomplete"):
                yield None
                return
