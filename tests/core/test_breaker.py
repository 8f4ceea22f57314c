"""The circuit breaker's states."""

from shoal.core.breaker import CircuitBreaker


def test_opens_after_threshold_then_half_open_probe() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: now[0])
    b.failure()
    assert b.state == "closed" and b.available()
    b.failure()
    assert b.state == "open" and not b.available() and b.retry_in() == 10
    now[0] = 11
    assert b.state == "half_open" and b.available()
    b.attempt()
    assert not b.available()  # one probe at a time
    b.failure()
    assert b.state == "open"
    now[0] = 30
    b.attempt()
    b.success()
    assert b.state == "closed" and b.failures == 0


def test_retry_after_opens_at_once() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=5, clock=lambda: now[0])
    b.failure(retry_after=3)
    assert b.state == "open" and b.retry_in() == 3
