"""Reasoning in ``<think>…</think>`` tags (Qwen3, DeepSeek-R1, QwQ, SmolLM3, ...).

Only a think block at the very start of the output counts (after optional
whitespace); a ``<think>`` later in an answer is just text. Whitespace around
the reasoning and between ``</think>`` and the answer is dropped. Templates
that open the block in the prompt (the output starts inside it and only
``</think>`` appears) use ``start_in_reasoning=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.core.types import ReasoningDelta, TextDelta, ToolSpec
from shoal.parsers.base import CallIds, Parsed, partial_suffix


class ThinkTagParser:
    """Splits a leading ``<think>`` block off as reasoning; the rest is text."""

    def __init__(self, tools: Sequence[ToolSpec] = (), calls: CallIds | None = None, parallel: bool = True, *,
                 start_in_reasoning: bool = False, open_tag: str = "<think>", close_tag: str = "</think>") -> None:
        self.open_tag = open_tag
        self.close_tag = close_tag
        self._state = "reasoning" if start_in_reasoning else "start"
        self._buffer = ""
        self._reasoning_started = False  # leading whitespace of the reasoning is dropped
        self._text_started = False  # so is whitespace between the block and the answer
        self._after_block = False

    @property
    def reasoning(self) -> bool:
        """Whether the output is inside the think block right now."""
        return self._state == "reasoning"

    def feed(self, text: str) -> list[Parsed]:
        """Events for the next piece of output."""
        self._buffer += text
        out: list[Parsed] = []
        while True:
            if self._state == "start":
                stripped = self._buffer.lstrip()
                if not stripped or (len(stripped) < len(self.open_tag) and self.open_tag.startswith(stripped)):
                    return out  # still undecided
                if stripped.startswith(self.open_tag):
                    self._buffer = stripped[len(self.open_tag):]
                    self._state = "reasoning"
                    continue
                self._state = "text"
                continue
            if self._state == "reasoning":
                pos = self._buffer.find(self.close_tag)
                if pos >= 0:
                    out += self._reasoning(self._buffer[:pos], final=True)
                    self._buffer = self._buffer[pos + len(self.close_tag):]
                    self._state = "text"
                    self._after_block = True
                    continue
                keep = partial_suffix(self._buffer, (self.close_tag,))
                body = self._buffer[:len(self._buffer) - keep]
                # Trailing whitespace waits: it is dropped if the block ends right after it.
                visible = body.rstrip()
                out += self._reasoning(visible, final=False)
                self._buffer = body[len(visible):] + self._buffer[len(body):]
                return out
            # text
            chunk, self._buffer = self._buffer, ""
            if self._after_block and not self._text_started:
                chunk = chunk.lstrip()
            if chunk:
                self._text_started = True
                out.append(TextDelta(chunk))
            return out

    def _reasoning(self, piece: str, *, final: bool) -> list[Parsed]:
        if not self._reasoning_started:
            piece = piece.lstrip()
        if final:
            piece = piece.rstrip()
        if not piece:
            return []
        self._reasoning_started = True
        return [ReasoningDelta(piece)]

    def finish(self) -> list[Parsed]:
        """Flush: an undecided start is text; an unclosed block is reasoning (the output was cut)."""
        buffer, self._buffer = self._buffer, ""
        if self._state == "reasoning":
            return self._reasoning(buffer, final=True)
        if self._state == "start":
            return [TextDelta(buffer)] if buffer else []
        if self._after_block and not self._text_started:
            buffer = buffer.lstrip()
        return [TextDelta(buffer)] if buffer else []
