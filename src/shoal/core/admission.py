"""Bounded admission: a fixed number of running slots plus a bounded wait queue."""

from __future__ import annotations

import asyncio
from collections import deque

from shoal.errors import OverloadedError


class Admission:
    """Admit up to ``slots`` generations at once; queue up to ``max_queue`` more.

    Past that, :meth:`acquire` fails at once with a 503 and ``retry-after``,
    which is what load balancers and the openai client's retry logic expect.
    Waiters are served first come, first served.
    """

    def __init__(self, slots: int, max_queue: int, retry_after: int = 1) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.retry_after = retry_after
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """How many requests are waiting for a slot."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if needed; raise 503 if the queue is full."""
        if self.running < self.slots and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise OverloadedError(
                "The model is overloaded: every slot is busy and the queue is full. Retry shortly.",
                headers={"retry-after": str(self.retry_after)},
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # We were handed a slot just as we gave up: pass it on.
                self.release()
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back, handing it straight to the oldest waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1
