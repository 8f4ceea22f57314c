"""What creating a response gives the router to frame: a whole response, a stream, or a queued background one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from shoal.protocol.responses_output import Response, ResponseStreamEvent


@dataclass(frozen=True, slots=True)
class Whole:
    """A finished response: the JSON body."""

    model: str
    """The model that answered (``x-shoal-model``)."""
    response: Response


@dataclass(frozen=True, slots=True)
class Stream:
    """A response's events, to send as SSE (generated now, or a background run followed live).

    Iterating it drives the generation; it is stored however the iteration ends.
    """

    model: str
    events: AsyncIterator[ResponseStreamEvent]


@dataclass(frozen=True, slots=True)
class Background:
    """A background response, queued: the object as it stands (``status: queued``)."""

    model: str
    response: Response
