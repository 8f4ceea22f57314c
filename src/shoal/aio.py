"""Small asyncio helpers shared by the request path."""

from __future__ import annotations

import asyncio
import math
import sys
from types import TracebackType


class Deadlines:
    """Timeouts for many concurrent waits, kept with one timer instead of one per wait.

    ``asyncio.timeout`` arms and cancels an event-loop timer for every wait, a cost a
    proxy pays on each request although its long timeouts (seconds to minutes) almost
    never fire. Here a wait only enters and leaves a dict; the single timer is set for
    the earliest live deadline and moved only when a new wait ends sooner. An expired
    wait's task is cancelled and its ``with`` block raises ``asyncio.TimeoutError``,
    as ``asyncio.timeout`` does.

    Use one instance per long-lived owner (an upstream's client) from one event loop
    at a time.
    """

    def __init__(self) -> None:
        self._live: dict[Deadline, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake = math.inf

    def limit(self, seconds: float) -> "Deadline":
        """A context manager that cancels the current task after ``seconds`` (``asyncio.TimeoutError``)."""
        return Deadline(self, seconds)

    def _enter(self, deadline: "Deadline") -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new loop (tests run one per test): the old loop's timer and waits are gone with it.
            self._loop, self._timer, self._wake = loop, None, math.inf
            self._live.clear()
        deadline.when = when = loop.time() + deadline.seconds
        self._live[deadline] = None
        if when < self._wake:
            self._arm(loop, when)

    def _leave(self, deadline: "Deadline") -> None:
        self._live.pop(deadline, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._wake = when
        self._timer = loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._timer, self._wake = None, math.inf
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        nearest = math.inf
        for deadline in list(self._live):
            if deadline.when <= now:
                del self._live[deadline]
                deadline.expire()
            elif deadline.when < nearest:
                nearest = deadline.when
        if nearest < math.inf:
            self._arm(loop, nearest)


class Deadline:
    """One wait of :class:`Deadlines` (a ``with`` block in the task that waits)."""

    __slots__ = ("owner", "seconds", "when", "task", "expired", "_cancelling")

    def __init__(self, owner: Deadlines, seconds: float) -> None:
        self.owner = owner
        self.seconds = seconds
        self.when = math.inf
        self.task: asyncio.Task[object] | None = None
        self.expired = False
        self._cancelling = 0

    def __enter__(self) -> "Deadline":
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline must be entered inside a task")
        self.task = task
        if sys.version_info >= (3, 11):
            self._cancelling = task.cancelling()
        self.owner._enter(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.owner._leave(self)
        if not self.expired:
            return
        # As asyncio.timeout does: only our own cancellation becomes a timeout; one from outside stays one.
        ours = sys.version_info < (3, 11) or self.task.uncancel() <= self._cancelling  # type: ignore[union-attr]
        if ours and exc_type is asyncio.CancelledError:
            raise asyncio.TimeoutError from exc

    def expire(self) -> None:
        """Cancel the waiting task (called by the owner's timer once the deadline has passed)."""
        self.expired = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
