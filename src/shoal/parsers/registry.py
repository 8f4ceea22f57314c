"""The parsers by name, and building a chain of them for one generation.

Every parser takes the same arguments — the request's tools, the shared
:class:`CallIds`, whether parallel calls are allowed — so a backend (or a
model's configuration) names the formats its model speaks and gets one
parser for the whole output::

    parser = build(["think", "hermes", "json"], tools=request.tools)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import MappingProxyType

from shoal.core.types import ToolSpec
from shoal.parsers.base import CallIds, Chain, StreamParser
from shoal.parsers.constrained import ConstrainedCallParser
from shoal.parsers.harmony import HarmonyParser
from shoal.parsers.hermes import HermesToolParser
from shoal.parsers.json_calls import LenientJsonToolParser
from shoal.parsers.think_tags import ThinkTagParser

ParserFactory = Callable[..., StreamParser]

PARSERS: Mapping[str, ParserFactory] = MappingProxyType({
    "think": ThinkTagParser,
    "think_open": partial(ThinkTagParser, start_in_reasoning=True),
    "hermes": HermesToolParser,
    "json": LenientJsonToolParser,
    "constrained": ConstrainedCallParser,
    "harmony": HarmonyParser,
})
"""Reasoning parsers (``think``, ``think_open``, ``harmony``) and tool-call parsers (the rest)."""


def parser(name: str, tools: Sequence[ToolSpec] = (), calls: CallIds | None = None,
           parallel: bool = True) -> StreamParser:
    """One parser by name; ``KeyError`` names the known ones."""
    try:
        factory = PARSERS[name]
    except KeyError:
        raise KeyError(f"unknown parser {name!r}; known: {', '.join(sorted(PARSERS))}") from None
    return factory(tools, calls, parallel)


def build(names: Sequence[str], tools: Sequence[ToolSpec] = (), calls: CallIds | None = None,
          parallel: bool = True) -> Chain:
    """The named parsers chained in order, sharing one :class:`CallIds`."""
    shared = calls or CallIds()
    return Chain([parser(name, tools, shared, parallel) for name in names])
