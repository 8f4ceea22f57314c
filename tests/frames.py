"""Parsing SSE bytes back into frames, for the encoder and HTTP tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable
from typing import Any

from shoal.core.types import GenerationEvent


async def events_of(items: Iterable[GenerationEvent | BaseException]) -> Any:
    """An async generation stream from a list; an exception item is raised there."""
    for item in items:
        if isinstance(item, BaseException):
            raise item
        yield item


async def collect(frames: AsyncIterable[bytes]) -> bytes:
    return b"".join([f async for f in frames])


def split_frames(raw: bytes) -> list[dict[str, str]]:
    """Frames as {field: value}; comments under ':'; checks the framing on the way."""
    text = raw.decode()
    assert text.endswith("\n\n"), text[-50:]
    out = []
    for block in text[:-2].split("\n\n"):
        frame: dict[str, str] = {}
        for line in block.split("\n"):
            assert line, f"empty line inside a frame: {block!r}"
            name, _, value = line.partition(":")
            frame[name or ":"] = value[1:] if value.startswith(" ") else value
        out.append(frame)
    return out


def data_payloads(raw: bytes) -> list[Any]:
    """The ``data:`` values of every frame, JSON-decoded except ``[DONE]``."""
    out = []
    for frame in split_frames(raw):
        if "data" in frame:
            out.append(frame["data"] if frame["data"] == "[DONE]" else json.loads(frame["data"]))
    return out
