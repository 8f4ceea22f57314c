"""Streamed chat-completion chunks (llama.cpp's and every OpenAI-compatible upstream's) as core events.

Usage and logprobs are parsed here too. Kept pure (no engine, no HTTP) so it is
unit-tested on recorded chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shoal.core.types import (
    Finish,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    NamedTool,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from shoal.parsers import CallIds, Chain, build
from shoal.parsers.think_tags import ThinkTagParser


def constrained_tools(request: GenerationRequest) -> tuple[ToolSpec, ...]:
    """The tools a call must be made of when the choice forces one (``required`` or named), else ``()``."""
    choice = request.tool_choice
    if not request.tools or choice in ("none", "auto"):
        return ()
    if isinstance(choice, NamedTool):
        return tuple(t for t in request.tools if t.name == choice.name)
    return request.tools


def forced_parallel(request: GenerationRequest) -> bool:
    """Whether a forced choice may be several calls: a named function is called once."""
    return request.parallel_tool_calls and not isinstance(request.tool_choice, NamedTool)


def output_parser(request: GenerationRequest, calls: CallIds) -> tuple[Chain, ThinkTagParser | None]:
    """The parser of the content llama.cpp streams for ``request``, and its think parser (if any).

    Constrained calls are parsed as such; otherwise a leading ``<think>`` block
    is reasoning (for templates llama.cpp does not extract it for), and with
    tools under ``auto`` the rest may be ``<tool_call>`` tags or lenient JSON calls.
    """
    forced = constrained_tools(request)
    if forced:
        return build(["constrained"], forced, calls, forced_parallel(request)), None
    think = ThinkTagParser()
    if request.tools and request.tool_choice == "auto":
        tools = build(["hermes", "json"], request.tools, calls, request.parallel_tool_calls)
        return Chain([think, *tools.parsers]), think
    return Chain([think]), think


def parse_logprobs(raw: Any) -> tuple[TokenLogprob, ...]:
    """A choice's ``logprobs`` (``{"content": [...]}``) as core logprobs; () when absent."""
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


def parse_usage(raw: dict[str, Any]) -> Usage:
    """A chunk's ``usage`` (with ``prompt_tokens_details.cached_tokens``) as core usage."""
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens", 0)),
        output_tokens=int(raw.get("completion_tokens", 0)),
        cached_tokens=int(details.get("cached_tokens", 0) or 0),
    )


def plain_answer(chunk: dict[str, Any], request: GenerationRequest) -> list[GenerationEvent] | None:
    """The events of a whole answer that needs no parsing, or None when it needs :class:`ChunkTranslator`.

    A request without tools whose answer is one choice of plain text (not starting
    with a tag), optional ``reasoning_content`` and no calls gives exactly what the
    translator would: the parsers could only pass the text through. Building the
    translator's parser chain for that showed in a gateway's per-request profile.
    """
    choices = chunk.get("choices")
    if request.tools or not isinstance(choices, list) or len(choices) != 1:
        return None
    choice = choices[0]
    delta = choice.get("delta") or {}
    content = delta.get("content")
    if delta.get("tool_calls") or (content and content.lstrip()[:1] in ("", "<")):
        return None
    events: list[GenerationEvent] = []
    reasoning = delta.get("reasoning_content")
    if reasoning:
        events.append(ReasoningDelta(reasoning))
    if content:
        events.append(TextDelta(content, parse_logprobs(choice.get("logprobs"))))
    u = parse_usage(chunk.get("usage") or {})
    events.append(Finish(choice.get("finish_reason") or "stop", Usage(
        u.input_tokens, u.output_tokens, u.cached_tokens, min(1 if reasoning else 0, u.output_tokens))))
    return events


class ChunkTranslator:
    """Turns streamed chat chunk dicts (llama.cpp's, or an upstream's) into :data:`GenerationEvent` values.

    ``reasoning_content`` and ``tool_calls`` deltas (what llama.cpp parsed
    itself) map straight to events; ``content`` goes through the request's
    output parser first. Logprobs stay with the text they belong to: a text
    event carries the logprobs of the chunks it came from.
    """

    def __init__(self, request: GenerationRequest | None = None, calls: CallIds | None = None) -> None:
        self.finish_reason: FinishReason | None = None
        self.usage = Usage()
        self.reasoning_chunks = 0
        self._calls = calls or CallIds()
        self._parser, self._think = output_parser(request or GenerationRequest(model="", messages=()), self._calls)
        self._native: dict[int, int] = {}
        self._saw_tool_calls = False
        self._logprobs: list[TokenLogprob] = []

    def feed(self, chunk: dict[str, Any]) -> list[GenerationEvent]:
        """Events for one chunk (often one, sometimes none)."""
        events: list[GenerationEvent] = []
        usage = chunk.get("usage")
        if usage:
            self.usage = parse_usage(usage)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if reasoning:
                self.reasoning_chunks += 1
                events.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if content:
                self._logprobs.extend(parse_logprobs(choice.get("logprobs")))
                was_thinking = self._think is not None and self._think.reasoning
                parsed = self._parse(self._parser.feed(content))
                # About one token per chunk: those inside the think block (tags included) are reasoning.
                if was_thinking or any(isinstance(e, ReasoningDelta) for e in parsed) or (
                        self._think is not None and self._think.reasoning):
                    self.reasoning_chunks += 1
                events += parsed
            for call in delta.get("tool_calls") or ():
                events.append(self._native_call(call))
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = reason
        return events

    def _parse(self, parsed: Sequence[GenerationEvent]) -> list[GenerationEvent]:
        out: list[GenerationEvent] = []
        for event in parsed:
            if isinstance(event, TextDelta):
                event = TextDelta(event.text, tuple(self._logprobs))
                self._logprobs.clear()
            else:
                # Reasoning and calls consumed the tokens seen so far.
                self._logprobs.clear()
                if isinstance(event, ToolCallDelta):
                    self._saw_tool_calls = True
            out.append(event)
        return out

    def _native_call(self, call: dict[str, Any]) -> ToolCallDelta:
        self._saw_tool_calls = True
        fn = call.get("function") or {}
        native = int(call.get("index", 0))
        call_id = call.get("id")
        if native not in self._native:
            self._native[native], fresh_id = self._calls.new()
            call_id = call_id or fresh_id
        return ToolCallDelta(index=self._native[native], id=call_id, name=fn.get("name"),
                             arguments=fn.get("arguments") or "")

    def close(self) -> list[GenerationEvent]:
        """What the output parser held back, then the closing :class:`Finish`."""
        events = self._parse(self._parser.finish())
        return [*events, self.finish()]

    def finish(self) -> Finish:
        """The closing event (after :meth:`close` has flushed the parser)."""
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
