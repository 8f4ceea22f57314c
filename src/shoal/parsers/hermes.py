"""Hermes / Qwen tool calls: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

The format of the Qwen2.5, Qwen3 and Hermes chat templates. Text around the
tags stays text; each tag pair holding a call of a known tool becomes one tool
call, sent as id + name and then the arguments once the closing tag arrives.
A tag pair that does not hold such a call is left in the text as it was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from shoal.core.types import TextDelta, ToolSpec
from shoal.parsers.base import CallIds, Parsed, call_events, partial_suffix
from shoal.parsers.calls import as_calls

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


class HermesToolParser:
    """Turns ``<tool_call>`` blocks into tool calls."""

    def __init__(self, tools: Sequence[ToolSpec] = (), calls: CallIds | None = None, parallel: bool = True) -> None:
        self.names = {t.name for t in tools}
        self.calls = calls or CallIds()
        self.parallel = parallel
        self._buffer = ""
        self._inside = False

    def feed(self, text: str) -> list[Parsed]:
        """Events for the next piece of output."""
        self._buffer += text
        out: list[Parsed] = []
        while True:
            if not self._inside:
                pos = self._buffer.find(OPEN)
                if pos < 0:
                    keep = partial_suffix(self._buffer, (OPEN,))
                    head = self._buffer[:len(self._buffer) - keep]
                    if head:
                        out.append(TextDelta(head))
                    self._buffer = self._buffer[len(head):]
                    return out
                if pos:
                    out.append(TextDelta(self._buffer[:pos]))
                self._buffer = self._buffer[pos:]
                self._inside = True
            end = self._buffer.find(CLOSE)
            if end < 0:
                return out
            block = self._buffer[:end + len(CLOSE)]
            self._buffer = self._buffer[end + len(CLOSE):]
            self._inside = False
            out += self._block(block)

    def _block(self, block: str) -> list[Parsed]:
        body = block[len(OPEN):len(block) - len(CLOSE)]
        try:
            value = json.loads(body)
        except ValueError:
            return [TextDelta(block)]
        calls = as_calls(value, self.names)
        if not calls:
            return [TextDelta(block)]
        out: list[Parsed] = []
        for name, arguments in calls:
            if not self.parallel and self.calls.count >= 1:
                break
            out += call_events(self.calls, name, arguments)
        return out

    def finish(self) -> list[Parsed]:
        """An unclosed block: a cut-off call is completed if its JSON is whole, else kept as text."""
        buffer, self._buffer = self._buffer, ""
        if self._inside:
            self._inside = False
            return self._block(buffer + CLOSE) if _whole_json(buffer[len(OPEN):]) else [TextDelta(buffer)]
        return [TextDelta(buffer)] if buffer else []


def _whole_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
