"""A create call's turn, and background runs on this replica: their event logs, replayed and followed live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from shoal.api.responses.builder import ResponseBuilder
from shoal.api.responses.translate import History, Translation
from shoal.core.context import RequestContext
from shoal.errors import ShoalError
from shoal.protocol.responses import ResponsesRequest
from shoal.protocol.responses_output import ResponseStreamEvent


@dataclass
class Turn:
    """One create-response call: its request (translated once), its history and how it is being built."""

    body: ResponsesRequest
    context: RequestContext
    translation: Translation
    history: History
    input_items: list[dict[str, Any]]
    builder: ResponseBuilder
    error: ShoalError | None = None


@dataclass
class BackgroundRun:
    """A background response running on this instance, with its event log for resuming streams."""

    turn: Turn
    events: list[ResponseStreamEvent] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    done: bool = False
    task: asyncio.Task[None] | None = None
    finishing: bool = False
    """Its final write is under way: nothing may cancel it any more."""
    stopped: str | None = None
    """Set when another replica cancelled or deleted it (or failed it): the stored state, which stands."""

    @property
    def running(self) -> bool:
        """Started here and not done yet."""
        return self.task is not None and not self.done

    async def publish(self, *events: ResponseStreamEvent) -> None:
        """Append to the log and wake the followers."""
        async with self.changed:
            self.events.extend(events)
            self.changed.notify_all()

    async def follow(self, starting_after: int | None) -> AsyncIterator[ResponseStreamEvent]:
        """Replay the events after ``starting_after``, then follow the run live to its end."""
        position = 0
        while True:
            async with self.changed:
                while position >= len(self.events) and not self.done:
                    await self.changed.wait()
                fresh = self.events[position:]
                position = len(self.events)
                finished = self.done and position >= len(self.events)
            for event in fresh:
                if starting_after is None or event["sequence_number"] > starting_after:
                    yield event
            if finished:
                return
