"""Tool calls under constrained decoding: the schema to enforce and the streaming parser of its output.

For ``tool_choice: "required"`` or a named function, the backend constrains
generation with :func:`tool_call_schema`: a JSON object ``{"name": <one of the
allowed tools>, "arguments": <that tool's parameters schema>}``, or an array
of them when parallel calls are allowed. The output is then valid JSON that
matches a tool's schema by construction, and :class:`ConstrainedCallParser`
streams it as tool-call events: id and name as soon as the name is complete,
then the arguments in fragments as they are generated (insignificant
whitespace dropped, so the arguments come out compact).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shoal.core.types import ToolCallDelta, ToolSpec
from shoal.parsers.base import CallIds, Parsed

MAX_PARALLEL_CALLS = 16
_ARGUMENT_KEYS = frozenset({"arguments", "parameters"})


def call_schema(tool: ToolSpec) -> dict[str, Any]:
    """The schema of one call of ``tool``."""
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "const": tool.name},
            "arguments": tool.parameters or {"type": "object", "properties": {}},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_call_schema(tools: Sequence[ToolSpec], *, parallel: bool) -> dict[str, Any]:
    """The schema that forces a call of one of ``tools`` (an array of calls when ``parallel``)."""
    if not tools:
        raise ValueError("a tool-call schema needs at least one tool")
    one = call_schema(tools[0]) if len(tools) == 1 else {"anyOf": [call_schema(t) for t in tools]}
    if not parallel:
        return one
    return {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS}


class ConstrainedCallParser:
    """Streams ``{"name", "arguments"}`` JSON (one object or an array) as tool-call events.

    The input is grammar-constrained, so it is valid JSON of that shape; the
    parser still never raises on anything else, it just yields no call for it.
    """

    def __init__(self, tools: Sequence[ToolSpec] = (), calls: CallIds | None = None, parallel: bool = True) -> None:
        self.calls = calls or CallIds()
        self.parallel = parallel
        self._state = "top"
        self._array = False
        self._key = ""  # raw JSON text of the key (or name) being read
        self._escape = False
        self._depth = 0
        self._in_string = False
        self._emit = False  # the value being read is the arguments
        self._index: int | None = None  # the current call, once its name is known
        self._early_args = ""  # arguments that came before the name
        self._pending = ""  # argument text of this feed, not yet sent
        self._out: list[Parsed] = []

    def feed(self, text: str) -> list[Parsed]:
        """Events for the next piece of output."""
        for char in text:
            self._step(char)
        self._flush()
        out, self._out = self._out, []
        return out

    def finish(self) -> list[Parsed]:
        """Nothing is held back beyond the current feed; a cut-off call stays as far as it got."""
        self._flush()
        out, self._out = self._out, []
        return out

    # -- the state machine -------------------------------------------------
    def _step(self, char: str) -> None:
        state = self._state
        if state == "top":
            if char == "[":
                self._state, self._array = "array", True
            elif char == "{":
                self._open_call()
        elif state == "array":
            if char == "{":
                self._open_call()
            elif char == "]":
                self._state = "done"
        elif state == "object":
            if char == '"':
                self._key, self._escape, self._state = "", False, "key"
            elif char == "}":
                self._close_call()
        elif state in ("key", "name"):
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._end_string()
                return
            self._key += char
        elif state == "colon":
            if char == ":":
                self._state = "value_start"
        elif state == "value_start":
            if char.isspace():
                return
            if self._key == "name" and char == '"':
                self._key, self._escape, self._state = "", False, "name"
                return
            self._emit = self._key in _ARGUMENT_KEYS
            self._depth, self._in_string, self._escape = 0, False, False
            self._state = "value"
            self._value(char)
        elif state == "value":
            self._value(char)

    def _end_string(self) -> None:
        try:
            decoded = json.loads('"' + self._key + '"')
        except ValueError:
            decoded = self._key
        if self._state == "key":
            self._key, self._state = decoded, "colon"
            return
        self._state = "object"
        if self._index is None and (self.parallel or self.calls.count == 0):
            self._index, call_id = self.calls.new()
            self._flush()
            self._out.append(ToolCallDelta(self._index, id=call_id, name=decoded))
            if self._early_args:
                self._out.append(ToolCallDelta(self._index, arguments=self._early_args))
                self._early_args = ""

    def _value(self, char: str) -> None:
        if self._in_string:
            self._put(char)
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._in_string = False
            return
        if char.isspace():
            return
        if char in "{[":
            self._depth += 1
        elif char in "}]" or (char == "," and self._depth == 0):
            if self._depth == 0:
                self._state = "object"
                if char == "}":
                    self._close_call()
                return
            self._depth -= 1
            if self._depth == 0:
                self._put(char)
                self._state = "object"
                return
        elif char == '"':
            self._in_string = True
        self._put(char)

    def _put(self, char: str) -> None:
        if not self._emit:
            return
        if self._index is None:
            self._early_args += char
        else:
            self._pending += char

    def _flush(self) -> None:
        if self._pending and self._index is not None:
            self._out.append(ToolCallDelta(self._index, arguments=self._pending))
        self._pending = ""

    def _open_call(self) -> None:
        self._state, self._index, self._early_args = "object", None, ""

    def _close_call(self) -> None:
        self._flush()
        self._index = None
        self._state = "array" if self._array else "done"
