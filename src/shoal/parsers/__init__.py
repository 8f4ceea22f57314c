"""Tool-call and reasoning parsers: one format per module, all behind :class:`StreamParser`."""

from shoal.parsers.base import CallIds, Chain, Parsed, StreamParser, merge
from shoal.parsers.registry import PARSERS, build, parser

__all__ = ["PARSERS", "CallIds", "Chain", "Parsed", "StreamParser", "build", "merge", "parser"]
