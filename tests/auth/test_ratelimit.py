"""Rate limits: fixed one-minute windows for requests and tokens, headers, 429 with retry-after."""

from __future__ import annotations

import pytest

from shoal.auth.counters import LocalCounters
from shoal.auth.ratelimit import RateLimiter, duration
from shoal.errors import RateLimitError
from shoal.storage.keys import ApiKey


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def key(**kw: object) -> ApiKey:
    return ApiKey(id="key_1", name="k", prefix="sk-shoal-x", **kw)  # type: ignore[arg-type]


def limiter(clock: Clock) -> RateLimiter:
    return RateLimiter(LocalCounters(clock), clock=clock)


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "250ms"), (0.0001, "1ms"), (1, "1s"), (16.2, "17s"),
                                               (60, "1m0s"), (125, "2m5s")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


async def test_requests_per_minute_fixed_window() -> None:
    clock = Clock(6000.0 + 45)  # 15 s before the window ends
    lim = limiter(clock)
    k = key(rpm=2)
    headers: dict[str, str] = {}
    await lim.count_request(k, headers)
    assert headers == {
        "x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "15s",
        "ratelimit-limit": "2", "ratelimit-remaining": "1", "ratelimit-reset": "6060",
    }
    await lim.count_request(k, headers)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimitError) as info:
        await lim.count_request(k, headers)
    err = info.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert err.headers["retry-after"] == "15" and err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "requests per minute" in err.message
    clock.now = 6060.0  # the next minute
    await lim.count_request(k, headers)
    assert headers["x-ratelimit-remaining-requests"] == "1"


async def test_keys_without_limits_get_no_headers() -> None:
    headers: dict[str, str] = {}
    await limiter(Clock(0)).count_request(key(), headers)
    assert headers == {}


async def test_tokens_per_minute_reserve_and_settle() -> None:
    clock = Clock(120.0)
    lim = limiter(clock)
    k = key(tpm=100, rpm=10)
    headers: dict[str, str] = {}
    await lim.count_request(k, headers)
    assert headers["x-ratelimit-remaining-tokens"] == "100"
    assert headers["ratelimit-limit"] == "10"  # DigitalOcean's headers follow the request limit
    hold = await lim.hold_tokens(k, 60, headers)
    assert hold is not None and headers["x-ratelimit-remaining-tokens"] == "40"
    with pytest.raises(RateLimitError) as info:
        await lim.hold_tokens(k, 50, headers)
    assert "tokens per minute" in info.value.message and info.value.headers["retry-after"] == "60"
    await lim.settle_tokens(hold, 20)  # it used fewer than reserved
    assert await lim.hold_tokens(k, 50, headers) is not None
    assert headers["x-ratelimit-remaining-tokens"] == "30"
    with pytest.raises(RateLimitError, match="more than key key_1's limit"):
        await lim.hold_tokens(k, 101, headers)


async def test_no_token_limit_no_hold() -> None:
    assert await limiter(Clock(0)).hold_tokens(key(rpm=5), 10_000, {}) is None


async def test_tokens_settle_in_the_window_they_were_spent_in() -> None:
    """A generation admitted in one minute and ending in the next counts its tokens in the next."""
    clock = Clock(6000.0 + 50)
    lim = limiter(clock)
    k = key(tpm=1000)
    hold = await lim.hold_tokens(k, 300, {})
    clock.now = 6060.0 + 5  # the next minute: the reservation no longer counts there
    headers: dict[str, str] = {}
    await lim.hold_tokens(k, 1, headers)
    assert headers["x-ratelimit-remaining-tokens"] == "999"
    await lim.settle_tokens(hold, 900)  # long output, spent in this minute
    with pytest.raises(RateLimitError):
        await lim.hold_tokens(k, 200, {})  # 901 used here: 200 more do not fit
    clock.now = 6000.0 + 55  # the minute it was admitted in got its reservation back
    await lim.hold_tokens(k, 1000, headers)
