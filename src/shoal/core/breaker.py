"""A circuit breaker per deployment: stop sending to an upstream that keeps failing, for a while.

Closed (normal) → open after ``threshold`` consecutive failures, or at once
when the upstream asks to back off (``retry-after``) → after the cooldown one
probe request is let through (half-open) → closed on success, open again on failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Counts consecutive failures of one deployment and opens for ``cooldown`` seconds."""

    def __init__(self, threshold: int = 3, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_until = 0.0
        self._clock = clock
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        if self.opened_until and self._clock() < self.opened_until:
            return "open"
        if self.opened_until:
            return "half_open"
        return "closed"

    def available(self) -> bool:
        """Whether a request may go to this deployment now (one probe at a time when half-open)."""
        state = self.state
        if state == "closed":
            return True
        return state == "half_open" and not self._probing

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through (0 if it does now)."""
        return max(0.0, self.opened_until - self._clock())

    def attempt(self) -> None:
        """A request is being sent (marks the half-open probe as taken)."""
        if self.state == "half_open":
            self._probing = True

    def success(self) -> None:
        """The deployment answered: close."""
        self.failures = 0
        self.opened_until = 0.0
        self._probing = False

    def failure(self, retry_after: float | None = None) -> None:
        """The deployment failed; open after ``threshold`` failures, a failed probe, or a ``retry-after``."""
        self.failures += 1
        probe_failed = self._probing
        self._probing = False
        if retry_after is not None and retry_after > 0:
            self.opened_until = max(self.opened_until, self._clock() + retry_after)
        elif self.failures >= self.threshold or probe_failed:
            self.opened_until = self._clock() + self.cooldown
