"""An Anthropic Messages API upstream, translated both ways.

Out: system prompts go to ``system``; tool calls become ``tool_use`` blocks and
tool results ``tool_result`` blocks (consecutive results merged into one user
turn); ``max_tokens`` is always sent (the request's, else the deployment's
default); ``cache_control`` marks the system prompt and the conversation prefix
for prompt caching; images become ``image`` blocks (base64 for data URLs, ``url``
sources otherwise). In: text, ``thinking`` (→ reasoning) and ``tool_use``
(→ tool-call deltas) blocks; ``cache_read_input_tokens`` → cached tokens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson

from shoal.core.backend import BackendFailure, BaseBackend, ModelCard
from shoal.backends.upstream import UpstreamConfig, UpstreamHTTP, dropped
from shoal.core.types import (
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    ImageInput,
    Message,
    NamedTool,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)

API_VERSION = "2023-06-01"
STOP_REASONS: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                                         "tool_use": "tool_calls", "refusal": "content_filter",
                                         "pause_turn": "stop"}
THINKING_BUDGET = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
EPHEMERAL = {"type": "ephemeral"}


def image_block(image: ImageInput) -> dict[str, Any]:
    """An ``image`` content block: inline base64 for a data URL, a ``url`` source for a web URL."""
    inline = image.inline()
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type, data = inline
    if media_type == "image/jpg":
        media_type = "image/jpeg"  # Anthropic accepts only the registered name
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _blocks(msg: Message) -> list[dict[str, Any]]:
    if msg.role == "tool":
        return [{"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": msg.content}]
    blocks: list[dict[str, Any]] = []
    if msg.images:
        # Text and images in the client's order (Anthropic has no ``detail``: it sizes images itself).
        blocks.extend(image_block(p) if isinstance(p, ImageInput) else {"type": "text", "text": p}
                      for p in msg.parts if p)
    elif msg.content:
        blocks.append({"type": "text", "text": msg.content})
    for call in msg.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {"_raw": call.arguments}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def messages_body(request: GenerationRequest, model: str, *, max_tokens: int, cache_prompt: bool = True,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The streamed ``/v1/messages`` body of ``request``."""
    system = "\n\n".join(m.content for m in request.messages if m.role in ("system", "developer") and m.content)
    turns: list[dict[str, Any]] = []
    for msg in request.messages:
        if msg.role in ("system", "developer"):
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _blocks(msg)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic needs alternating turns
        else:
            turns.append({"role": role, "content": blocks})
    if cache_prompt and turns and turns[-1]["content"]:
        # Cache everything up to the newest turn; the next request of the conversation reads it back.
        turns[-1]["content"][-1] = {**turns[-1]["content"][-1], "cache_control": EPHEMERAL}
    s = request.sampling
    body: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": s.max_tokens or max_tokens,
                            "stream": True}
    if system:
        block: dict[str, Any] = {"type": "text", "text": system}
        if cache_prompt:
            block["cache_control"] = EPHEMERAL
        body["system"] = [block]
    if s.temperature is not None:
        body["temperature"] = min(1.0, s.temperature)
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.stop:
        body["stop_sequences"] = list(s.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    budget = THINKING_BUDGET.get(request.reasoning_effort or "")
    if budget is not None and body["max_tokens"] > budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        body.pop("temperature", None)  # thinking requires the default temperature
    if request.tools and request.tool_choice != "none":
        body["tools"] = [{"name": t.name, "description": t.description or "",
                          "input_schema": t.parameters or {"type": "object", "properties": {}}}
                         for t in request.tools]
        choice = request.tool_choice
        tc: dict[str, Any] = ({"type": "tool", "name": choice.name} if isinstance(choice, NamedTool)
                              else {"type": "any" if choice == "required" else "auto"})
        if not request.parallel_tool_calls:
            tc["disable_parallel_tool_use"] = True
        body["tool_choice"] = tc
    if extra:
        body.update(extra)
    return body


class MessagesTranslator:
    """Turns Anthropic stream events into core events."""

    def __init__(self) -> None:
        self.reason: FinishReason | None = None
        self.input_tokens = 0
        self.cached_tokens = 0
        self.output_tokens = 0
        self.reasoning_chunks = 0
        self.stopped = False
        self.stop_sequence: str | None = None
        self._calls: dict[int, int] = {}

    def feed(self, event: dict[str, Any]) -> list[GenerationEvent]:
        """Events for one stream event; raises :class:`BackendFailure` on an ``error`` event."""
        kind = event.get("type")
        if kind == "message_start":
            self._usage((event.get("message") or {}).get("usage") or {})
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._calls.setdefault(int(event.get("index", 0)), len(self._calls))
                return [ToolCallDelta(index=index, id=block.get("id"), name=block.get("name"))]
            if block.get("type") == "text" and block.get("text"):
                return [TextDelta(block["text"])]
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta" and delta.get("text"):
                return [TextDelta(delta["text"])]
            if dtype == "thinking_delta" and delta.get("thinking"):
                self.reasoning_chunks += 1
                return [ReasoningDelta(delta["thinking"])]
            if dtype == "input_json_delta" and delta.get("partial_json"):
                index = self._calls.setdefault(int(event.get("index", 0)), len(self._calls))
                return [ToolCallDelta(index=index, arguments=delta["partial_json"])]
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            reason = delta.get("stop_reason")
            if reason:
                self.reason = STOP_REASONS.get(reason, "stop")
            self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
            self._usage(event.get("usage") or {})
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            err = event.get("error") or {}
            overloaded = err.get("type") in ("overloaded_error", "api_error", "rate_limit_error")
            raise BackendFailure(f"Anthropic failed while streaming: {err.get('message', err)}",
                                 retryable=overloaded, code="upstream_error")
        return []

    def _usage(self, usage: dict[str, Any]) -> None:
        if "input_tokens" in usage:
            cached = int(usage.get("cache_read_input_tokens") or 0)
            written = int(usage.get("cache_creation_input_tokens") or 0)
            self.input_tokens = int(usage.get("input_tokens") or 0) + cached + written
            self.cached_tokens = cached
        if "output_tokens" in usage:
            self.output_tokens = int(usage.get("output_tokens") or 0)

    def finish(self) -> Finish:
        """The closing event."""
        usage = Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                      cached_tokens=self.cached_tokens,
                      reasoning_tokens=min(self.reasoning_chunks, self.output_tokens))
        return Finish(self.reason or "stop", usage, self.stop_sequence)


class AnthropicBackend(BaseBackend):
    """Serves one catalog model from the Anthropic Messages API."""

    def __init__(self, name: str, card: ModelCard, config: UpstreamConfig, capacity: int = 64,
                 max_tokens: int = 4096, cache_prompt: bool = True) -> None:
        self.name = name
        self.capacity = capacity
        self.card = card
        self.config = config
        self.max_tokens = max_tokens
        self.cache_prompt = cache_prompt
        key = config.api_key()
        auth = {"anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})}
        self.http = UpstreamHTTP(config, who=f"upstream {name}", auth_headers=auth)

    def __repr__(self) -> str:
        return f"AnthropicBackend({self.name!r}, {self.config.base_url!r})"

    def models(self) -> list[ModelCard]:
        """The catalog model this deployment serves."""
        return [self.card]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream the Messages API's events as core events."""
        body = messages_body(request, self.config.model, max_tokens=self.max_tokens,
                             cache_prompt=self.cache_prompt, extra=self.config.extra_body)
        translator = MessagesTranslator()
        path = "messages" if self.config.base_url.rstrip("/").endswith("/v1") else "v1/messages"
        async with self.http.post(path, body) as response:
            async for _, data in self.http.sse(response):
                try:
                    event = orjson.loads(data)
                except ValueError as exc:
                    raise dropped(self.http.who, "malformed event") from exc
                for out in translator.feed(event if isinstance(event, dict) else {}):
                    yield out
                if translator.stopped:
                    break
            if not translator.stopped:
                raise dropped(self.http.who)
        yield translator.finish()

    async def health(self) -> dict[str, Any]:
        """Anthropic has no cheap unauthenticated probe: report the configuration only."""
        return {"status": "ok" if self.config.api_key() else "no_key", "upstream": self.config.base_url}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()
