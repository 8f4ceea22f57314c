"""What every tool-call and reasoning parser shares: the protocol, call ids, chaining, merging.

A parser consumes a model's raw output text in pieces of any size (``feed``)
and produces core events; ``finish`` flushes what it held back. The contract
(tested for every parser) is that the *merged* result does not depend on how
the text was split.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Union

from shoal.core.types import ReasoningDelta, TextDelta, ToolCallDelta

Parsed = Union[TextDelta, ReasoningDelta, ToolCallDelta]
"""What a parser produces."""


class StreamParser(Protocol):
    """An incremental parser of model output text."""

    def feed(self, text: str) -> list[Parsed]:
        """Events for the next piece of output (may hold part of it back)."""
        ...

    def finish(self) -> list[Parsed]:
        """Events for whatever was held back; the output has ended."""
        ...


def new_call_id() -> str:
    """An OpenAI-style tool call id."""
    return "call_" + secrets.token_hex(12)


@dataclass
class CallIds:
    """Hands out tool-call indices and ids; shared by the parsers of one generation so indices never clash."""

    make_id: Callable[[], str] = new_call_id
    count: int = 0

    def new(self) -> tuple[int, str]:
        """The next (index, id)."""
        index = self.count
        self.count += 1
        return index, self.make_id()


def counter_ids(prefix: str = "call_") -> CallIds:
    """Deterministic ids (``call_0``, ``call_1``, ...) for tests."""
    state = {"n": 0}

    def make() -> str:
        value = f"{prefix}{state['n']}"
        state["n"] += 1
        return value

    return CallIds(make_id=make)


def partial_suffix(buffer: str, markers: Iterable[str]) -> int:
    """Length of the longest end of ``buffer`` that could be the start of one of ``markers``."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(buffer)), best, -1):
            if buffer.endswith(marker[:size]):
                best = size
                break
    return best


def find_first(buffer: str, markers: Iterable[str], start: int = 0) -> tuple[int, str] | None:
    """The earliest occurrence of any of ``markers`` in ``buffer`` as (position, marker)."""
    found: tuple[int, str] | None = None
    for marker in markers:
        pos = buffer.find(marker, start)
        if pos >= 0 and (found is None or pos < found[0]):
            found = (pos, marker)
    return found


def call_events(calls: CallIds, name: str, arguments: str) -> list[Parsed]:
    """A complete call as the two events every encoder expects: id + name, then the arguments."""
    index, call_id = calls.new()
    return [ToolCallDelta(index, id=call_id, name=name), ToolCallDelta(index, arguments=arguments)]


class Chain:
    """Runs parsers in series: the text each one lets through goes into the next."""

    def __init__(self, parsers: Sequence[StreamParser]) -> None:
        self.parsers = list(parsers)

    def _through(self, events: list[Parsed], rest: Sequence[StreamParser]) -> list[Parsed]:
        if not rest:
            return events
        out: list[Parsed] = []
        for event in events:
            if isinstance(event, TextDelta):
                out += self._through(rest[0].feed(event.text), rest[1:])
            else:
                out.append(event)
        return out

    def feed(self, text: str) -> list[Parsed]:
        """Feed the first parser and pipe its text through the others."""
        if not self.parsers:
            return [TextDelta(text)] if text else []
        return self._through(self.parsers[0].feed(text), self.parsers[1:])

    def finish(self) -> list[Parsed]:
        """Finish each parser in order, piping what it flushes through the later ones."""
        out: list[Parsed] = []
        for position, parser in enumerate(self.parsers):
            out += self._through(parser.finish(), self.parsers[position + 1:])
        return out


@dataclass
class MergedCall:
    """A tool call folded from its fragments."""

    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class Merged:
    """The split-independent result of a parse: text and reasoning runs in order, and the calls."""

    runs: list[tuple[str, str]] = field(default_factory=list)
    calls: dict[int, MergedCall] = field(default_factory=dict)


def merge(events: Iterable[Parsed]) -> Merged:
    """Join adjacent text (and reasoning) pieces and fold each call's fragments; for comparing parses."""
    result = Merged()
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = result.calls.setdefault(event.index, MergedCall())
            if event.id:
                assert call.id in (None, event.id), "a call's id changed"
                call.id = event.id
            if event.name:
                assert call.name in (None, event.name), "a call's name changed"
                call.name = event.name
            call.arguments += event.arguments
            result.runs.append(("call", str(event.index)))
            continue
        kind = "text" if isinstance(event, TextDelta) else "reasoning"
        if not event.text:
            continue
        if result.runs and result.runs[-1][0] == kind:
            result.runs[-1] = (kind, result.runs[-1][1] + event.text)
        else:
            result.runs.append((kind, event.text))
    # Consecutive fragments of one call count once.
    deduped: list[tuple[str, str]] = []
    for run in result.runs:
        if not (run[0] == "call" and deduped and deduped[-1] == run):
            deduped.append(run)
    result.runs = deduped
    return result
