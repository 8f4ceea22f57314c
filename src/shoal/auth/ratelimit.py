"""Per-key rate limits: requests and tokens per minute, in fixed one-minute windows.

Windows are fixed (aligned to the wall-clock minute, the same on every replica):
a key may use its full limit in each minute, so a burst straddling a minute
boundary can reach twice the limit over 60 s; in exchange the reset time in the
headers is exact and a hit costs one counter update.

* Requests are counted when a key is authenticated (every /v1 call counts).
* Tokens are reserved when a generation is admitted (an estimate of the prompt
  plus the most it may write: ``max_tokens``, else the context left) and settled
  to the real count when it ends, in the window it ends in: that is where the
  tokens were spent, so a long generation cannot push its cost into a past minute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from shoal.auth.counters import Check, Counters
from shoal.errors import RateLimitError
from shoal.storage.keys import ApiKey

WINDOW_SECONDS = 60.0
UNBOUNDED = 2**62


def duration(seconds: float) -> str:
    """A reset delay the way OpenAI writes it: ``250ms``, ``17s``, ``1m0s``."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


@dataclass(frozen=True)
class TokenHold:
    """Tokens reserved in one window for one generation, settled when it ends."""

    counter: str
    amount: int
    key_id: str = ""
    window: int = 0


@dataclass(frozen=True)
class Window:
    """The current fixed window: its index, when it ends (epoch s) and the seconds until then."""

    index: int
    ends_at: float
    reset: float


class RateLimiter:
    """Enforces a key's ``rpm`` and ``tpm`` and reports their state as response headers."""

    def __init__(self, counters: Counters, clock: Callable[[], float] = time.time,
                 window: float = WINDOW_SECONDS) -> None:
        self.counters = counters
        self.clock = clock
        self.window_seconds = window

    def window(self) -> Window:
        """The window ``now`` falls in."""
        now = self.clock()
        index = int(now // self.window_seconds)
        ends_at = (index + 1) * self.window_seconds
        return Window(index, ends_at, ends_at - now)

    @staticmethod
    def _name(key: ApiKey | str, kind: str, window: Window | int) -> str:
        key_id = key if isinstance(key, str) else key.id
        return f"rl:{key_id}:{kind}:{window if isinstance(window, int) else window.index}"

    def _checks(self, key: ApiKey, window: Window, requests: int, tokens: int) -> list[tuple[str, Check]]:
        checks = []
        if key.rpm:
            checks.append(("requests", Check(self._name(key, "rpm", window), key.rpm if requests else UNBOUNDED,
                                             requests)))
        if key.tpm:
            checks.append(("tokens", Check(self._name(key, "tpm", window), key.tpm if tokens else UNBOUNDED,
                                           tokens)))
        return checks

    async def _hit(self, key: ApiKey, requests: int, tokens: int,
                   headers: dict[str, str]) -> tuple[bool, dict[str, int], Window]:
        window = self.window()
        checks = self._checks(key, window, requests, tokens)
        ok, used = await self.counters.hit([c for _, c in checks], ttl=2 * self.window_seconds)
        state = {kind: value for (kind, _), value in zip(checks, used, strict=True)}
        headers.update(self.headers(key, state, window))
        return ok, state, window

    def headers(self, key: ApiKey, used: dict[str, int], window: Window) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` and DigitalOcean's ``ratelimit-*`` headers for the limits ``key`` has."""
        out: dict[str, str] = {}
        limits = {"requests": key.rpm, "tokens": key.tpm}
        for kind in ("requests", "tokens"):
            limit = limits[kind]
            if not limit:
                continue
            remaining = max(limit - used.get(kind, 0), 0)
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            out[f"x-ratelimit-reset-{kind}"] = duration(window.reset)
            if "ratelimit-limit" not in out:
                out["ratelimit-limit"] = str(limit)
                out["ratelimit-remaining"] = str(remaining)
                out["ratelimit-reset"] = str(math.ceil(window.ends_at))
        return out

    @staticmethod
    def _refuse(message: str, window: Window, headers: dict[str, str]) -> RateLimitError:
        return RateLimitError(message, headers={**headers, "retry-after": str(max(math.ceil(window.reset), 1))})

    async def count_request(self, key: ApiKey, headers: dict[str, str]) -> None:
        """Count one request against ``rpm`` (429 past it); fill ``headers`` with the current state."""
        if not key.rpm and not key.tpm:
            return
        ok, _, window = await self._hit(key, 1 if key.rpm else 0, 0, headers)
        if not ok:
            raise self._refuse(
                f"Rate limit reached for requests per minute on key {key.id}: limit {key.rpm}. "
                f"Retry in {duration(window.reset)}.", window, headers)

    async def hold_tokens(self, key: ApiKey, tokens: int, headers: dict[str, str]) -> TokenHold | None:
        """Reserve ``tokens`` against ``tpm`` (429 if they do not fit in this minute)."""
        if not key.tpm:
            return None
        tokens = max(tokens, 1)
        ok, used, window = await self._hit(key, 0, tokens, headers)
        if not ok:
            if tokens > key.tpm:
                message = (f"This request needs about {tokens} tokens, more than key {key.id}'s limit of "
                           f"{key.tpm} tokens per minute. Send a shorter prompt or a lower max_tokens.")
            else:
                message = (f"Rate limit reached for tokens per minute on key {key.id}: limit {key.tpm}, used "
                           f"{used.get('tokens', 0)}, this request needs about {tokens}. "
                           f"Retry in {duration(window.reset)}.")
            raise self._refuse(message, window, headers)
        return TokenHold(self._name(key, "tpm", window), tokens, key.id, window.index)

    async def settle_tokens(self, hold: TokenHold, actual: int) -> None:
        """Replace the reservation by the tokens really used, counted in the window current now."""
        ttl = 2 * self.window_seconds
        now = self.window().index
        if now == hold.window or not hold.key_id:
            delta = actual - hold.amount
            if delta:
                await self.counters.add(hold.counter, delta, ttl=ttl)
            return
        if now - hold.window < 2:  # older counters have expired: nothing left to release there
            await self.counters.add(hold.counter, -hold.amount, ttl=ttl)
        if actual:
            await self.counters.add(self._name(hold.key_id, "tpm", now), actual, ttl=ttl)
