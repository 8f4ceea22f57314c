"""Translation between Shoal's core types and llama.cpp's chat dicts.

Kept pure (no engine) so it is unit-tested on recorded chunks.
"""

from __future__ import annotations

from typing import Any

from shoal.core.types import (
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    Message,
    NamedTool,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)


def _message(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.role, "content": msg.content}
    if msg.role == "developer":
        # Most GGUF chat templates know only "system".
        out["role"] = "system"
    if msg.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in msg.tool_calls
        ]
    if msg.tool_call_id:
        out["tool_call_id"] = msg.tool_call_id
    if msg.reasoning:
        out["reasoning_content"] = msg.reasoning
    return out


def to_llama_body(request: GenerationRequest) -> dict[str, Any]:
    """The OpenAI-style body llama.cpp's ``handle_chat_completions`` takes (always streamed)."""
    s = request.sampling
    body: dict[str, Any] = {
        "messages": [_message(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
    }
    if s.temperature is not None:
        body["temperature"] = s.temperature
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.seed is not None:
        body["seed"] = s.seed
    if s.stop:
        body["stop"] = list(s.stop)
    if s.max_tokens is not None:
        body["max_tokens"] = s.max_tokens
    if s.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = s.top_logprobs
    if request.tools and request.tool_choice != "none":
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.parameters or {"type": "object", "properties": {}}}}
            for t in request.tools
        ]
        choice = request.tool_choice
        if isinstance(choice, NamedTool):
            body["tools"] = [t for t in body["tools"] if t["function"]["name"] == choice.name]
            body["tool_choice"] = "required"
        else:
            body["tool_choice"] = choice
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return body


def _logprobs(raw: Any) -> tuple[TokenLogprob, ...]:
    if not raw or not isinstance(raw, dict):
        return ()
    out = []
    for entry in raw.get("content") or ():
        top = tuple(
            (t.get("token", ""), float(t.get("logprob", 0.0)), tuple(t.get("bytes") or ()))
            for t in entry.get("top_logprobs") or ()
        )
        out.append(TokenLogprob(entry.get("token", ""), float(entry.get("logprob", 0.0)),
                                tuple(entry.get("bytes") or ()), top))
    return tuple(out)


class ChunkTranslator:
    """Turns llama.cpp's streamed chunk dicts into :data:`GenerationEvent` values."""

    def __init__(self) -> None:
        self.finish_reason: FinishReason | None = None
        self.usage = Usage()
        self.reasoning_chunks = 0
        self._saw_tool_calls = False

    def feed(self, chunk: dict[str, Any]) -> list[GenerationEvent]:
        """Events for one chunk (often one, sometimes none)."""
        events: list[GenerationEvent] = []
        usage = chunk.get("usage")
        if usage:
            details = usage.get("prompt_tokens_details") or {}
            self.usage = Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
                cached_tokens=int(details.get("cached_tokens", 0) or 0),
            )
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if reasoning:
                self.reasoning_chunks += 1
                events.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if content:
                events.append(TextDelta(content, _logprobs(choice.get("logprobs"))))
            for call in delta.get("tool_calls") or ():
                self._saw_tool_calls = True
                fn = call.get("function") or {}
                events.append(ToolCallDelta(index=int(call.get("index", 0)), id=call.get("id"),
                                            name=fn.get("name"), arguments=fn.get("arguments") or ""))
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = reason
        return events

    def finish(self) -> Finish:
        """The closing event, once the engine is done."""
        reason: FinishReason = self.finish_reason or "stop"
        if self._saw_tool_calls and reason == "stop":
            reason = "tool_calls"
        usage = Usage(
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            cached_tokens=self.usage.cached_tokens,
            reasoning_tokens=min(self.reasoning_chunks, self.usage.output_tokens),
        )
        return Finish(reason, usage)
