"""Lenient JSON tool calls: what small models write instead of their template's tags.

Qwen2.5-Coder-0.5B, asked to call a tool, writes a fenced ``json`` block, a bare
object, or several of them one per line. Such output counts as tool calls
only when the *whole* message is nothing but calls of known tools (objects with
``name`` and ``arguments``, alone, in an array, or in code fences); text that
shows a call in passing — an explanation with an example, a JSON answer that
happens to have a ``name`` key — stays text.

While the output could still be such a message (it starts with ``{``, ``[``
or a json fence) it is held back; as soon as it cannot, it streams as text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shoal.core.types import TextDelta, ToolSpec
from shoal.parsers.base import CallIds, Parsed, call_events
from shoal.parsers.calls import as_calls

FENCE = "```"
JSON_FENCE_INFO = frozenset({"", "json", "json5", "jsonc", "tool_call", "tool_code"})
_DECODER = json.JSONDecoder()


class LenientJsonToolParser:
    """Turns a message that consists only of JSON calls into tool calls."""

    def __init__(self, tools: Sequence[ToolSpec] = (), calls: CallIds | None = None, parallel: bool = True) -> None:
        self.names = {t.name for t in tools}
        self.calls = calls or CallIds()
        self.parallel = parallel
        self._buffer = ""
        self._state = "start"  # start -> holding | text

    def feed(self, text: str) -> list[Parsed]:
        """Events for the next piece of output."""
        if self._state == "text":
            return [TextDelta(text)] if text else []
        self._buffer += text
        if self._state == "start":
            self._state = self._decide(self._buffer.lstrip())
            if self._state == "text":
                buffer, self._buffer = self._buffer, ""
                return [TextDelta(buffer)] if buffer else []
        return []

    def _decide(self, head: str) -> str:
        if not head or not self.names:
            return "start" if self.names else "text"
        if head[0] in "{[":
            return "holding"
        if head.startswith(FENCE):
            newline = head.find("\n")
            if newline < 0:
                return "start" if len(head) <= 16 else "text"
            return "holding" if head[3:newline].strip().lower() in JSON_FENCE_INFO else "text"
        return "start" if FENCE.startswith(head) else "text"

    def finish(self) -> list[Parsed]:
        """Decide: calls if the whole held message is calls of known tools, else text."""
        buffer, self._buffer = self._buffer, ""
        if not buffer:
            return []
        calls = parse_calls(buffer, self.names) if self._state != "text" else None
        if not calls:
            return [TextDelta(buffer)]
        out: list[Parsed] = []
        for name, arguments in calls if self.parallel else calls[:max(0, 1 - self.calls.count)]:
            out += call_events(self.calls, name, arguments)
        return out


def missing_closers(text: str) -> str | None:
    """The brackets that would close ``text`` if it is JSON cut short after a complete value, else None.

    Small models sometimes stop one ``}`` early; ``{"name": "f", "arguments": {"q": "x"}`` is repaired,
    text cut inside a string or after a comma or colon is not.
    """
    stack: list[str] = []
    in_string = escape = False
    last = ""
    for char in text:
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
            last = char
            continue
        if char.isspace():
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and (not stack or stack.pop() != char):
            return None
        last = char
    if in_string or not stack or last in ",:{[":
        return None
    return "".join(reversed(stack))


def _values(text: str) -> list[Any] | None:
    """Every JSON value in ``text`` (separated only by whitespace), or None if anything else is there.

    The last value may be missing its closing brackets (see :func:`missing_closers`).
    """
    values: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return values
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except ValueError:
            rest = text[pos:].rstrip()
            closers = missing_closers(rest)
            if closers is None:
                return None
            try:
                repaired = json.loads(rest + closers)
            except ValueError:
                return None
            # A repaired call must have got as far as its arguments (not be cut right after its name).
            items = repaired if isinstance(repaired, list) else [repaired]
            if not all(isinstance(i, dict) and ({"arguments", "parameters"} & set(i) or "function" in i)
                       for i in items):
                return None
            values.append(repaired)
            return values
        values.append(value)


def parse_calls(text: str, names: set[str]) -> list[tuple[str, str]] | None:
    """``(name, arguments)`` pairs when ``text`` is only calls (bare or fenced), else None."""
    values: list[Any] = []
    rest = text.strip()
    while rest:
        if rest.startswith(FENCE):
            newline = rest.find("\n")
            close = rest.find(FENCE, newline + 1) if newline >= 0 else -1
            if newline < 0 or close < 0 or rest[3:newline].strip().lower() not in JSON_FENCE_INFO:
                return None
            inner = _values(rest[newline + 1:close])
            rest = rest[close + len(FENCE):].lstrip()
        else:
            cut = rest.find(FENCE)
            inner = _values(rest if cut < 0 else rest[:cut])
            rest = "" if cut < 0 else rest[cut:]
        if not inner:
            return None
        values += inner
    calls: list[tuple[str, str]] = []
    for value in values:
        found = as_calls(value, names)
        if found is None:
            return None
        calls += found
    return calls or None
