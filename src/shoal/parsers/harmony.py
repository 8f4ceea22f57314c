"""gpt-oss "harmony" channels, for upstreams that send them unparsed.

The output is a series of messages, each a header and a body::

    <|channel|>analysis<|message|>Need the weather.<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"q":"x"}<|call|>
    <|start|>assistant<|channel|>final<|message|>It is sunny.<|return|>

``analysis`` bodies are reasoning, ``final`` (and ``commentary`` without a
recipient) bodies are text, a body addressed ``to=functions.NAME`` is a call of
NAME whose arguments stream as they come. Bodies addressed to other recipients
(the model's own built-in tools) are dropped. Text before any header is text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shoal.core.types import ReasoningDelta, TextDelta, ToolCallDelta, ToolSpec
from shoal.parsers.base import CallIds, Parsed, find_first, partial_suffix

START, CHANNEL, MESSAGE, CONSTRAIN = "<|start|>", "<|channel|>", "<|message|>", "<|constrain|>"
ENDS = ("<|end|>", "<|return|>", "<|call|>")
MARKERS = (START, CHANNEL, MESSAGE, CONSTRAIN, *ENDS)
_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_RECIPIENT = re.compile(r"to=([^\s<]+)")


class HarmonyParser:
    """Routes harmony message bodies to reasoning, text and tool calls."""

    def __init__(self, tools: Sequence[ToolSpec] = (), calls: CallIds | None = None, parallel: bool = True) -> None:
        self.calls = calls or CallIds()
        self.parallel = parallel
        self._buffer = ""
        self._header: str | None = None  # set while reading a header
        self._route = "text"  # text | reasoning | call | drop
        self._index: int | None = None
        self._pending_start: ToolCallDelta | None = None  # sent with the first piece of the call's body

    def feed(self, text: str) -> list[Parsed]:
        """Events for the next piece of output."""
        self._buffer += text
        out: list[Parsed] = []
        while True:
            found = find_first(self._buffer, MARKERS)
            if found is None:
                if self._header is None:
                    keep = partial_suffix(self._buffer, MARKERS)
                    out += self._body(self._buffer[:len(self._buffer) - keep])
                    self._buffer = self._buffer[len(self._buffer) - keep:]
                return out
            pos, marker = found
            before, self._buffer = self._buffer[:pos], self._buffer[pos + len(marker):]
            if self._header is not None:
                self._header += before
                if marker == MESSAGE:
                    self._open_body(self._header)
                    self._header = None
                else:
                    self._header += marker
                continue
            out += self._body(before)
            if marker in (START, CHANNEL):
                self._header = "" if marker == START else CHANNEL
            elif marker in ENDS:
                self._route, self._index = "text", None

    def _open_body(self, header: str) -> None:
        channel = _CHANNEL.search(header)
        recipient = _RECIPIENT.search(header)
        self._index = None
        if recipient is not None:
            target = recipient.group(1)
            if target.startswith("functions.") and (self.parallel or self.calls.count == 0):
                self._route = "call"
                self._index, call_id = self.calls.new()
                self._pending_start = ToolCallDelta(self._index, id=call_id, name=target[len("functions."):])
                return
            self._route = "drop"
            return
        self._route = "reasoning" if channel is not None and channel.group(1) == "analysis" else "text"

    def _body(self, text: str) -> list[Parsed]:
        out: list[Parsed] = []
        if self._route == "call":
            if self._pending_start is not None:
                out.append(self._pending_start)
                self._pending_start = None
            if text and self._index is not None:
                out.append(ToolCallDelta(self._index, arguments=text))
            return out
        if not text or self._route == "drop":
            return out
        out.append(ReasoningDelta(text) if self._route == "reasoning" else TextDelta(text))
        return out

    def finish(self) -> list[Parsed]:
        """Flush the body in progress (a header cut off mid-way is dropped)."""
        buffer, self._buffer = self._buffer, ""
        if self._header is not None:
            self._header = None
            return []
        return self._body(buffer)
