"""Folding an event stream into the complete result of a generation."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.core.types import (
    Finish,
    FinishReason,
    GenerationEvent,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class Accumulator:
    """Collects text, reasoning, tool calls, logprobs and the finish of one generation."""

    text_parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage = field(default_factory=Usage)
    _calls: dict[int, _PartialCall] = field(default_factory=dict)

    def add(self, event: GenerationEvent) -> None:
        """Fold one event in."""
        if isinstance(event, TextDelta):
            self.text_parts.append(event.text)
            self.logprobs.extend(event.logprobs)
        elif isinstance(event, ReasoningDelta):
            self.reasoning_parts.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self._calls.setdefault(event.index, _PartialCall())
            if event.id:
                call.id = event.id
            if event.name:
                call.name = event.name
            if event.arguments:
                call.arguments.append(event.arguments)
        elif isinstance(event, Finish):
            self.finish_reason = event.reason
            self.usage = event.usage

    @property
    def text(self) -> str:
        """The visible answer so far."""
        return "".join(self.text_parts)

    @property
    def reasoning(self) -> str:
        """The reasoning text so far."""
        return "".join(self.reasoning_parts)

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Complete tool calls, in index order."""
        return [ToolCall(c.id, c.name, "".join(c.arguments)) for _, c in sorted(self._calls.items())]
