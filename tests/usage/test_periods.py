"""Budget periods (UTC day / month) and ``--since`` parsing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shoal.usage.periods import parse_since, period_bounds, period_label


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()  # type: ignore[misc]


def test_periods() -> None:
    now = ts(2026, 12, 31, 15, 30)
    assert period_bounds("day", now) == (ts(2026, 12, 31), ts(2027, 1, 1))
    assert period_bounds("month", now) == (ts(2026, 12, 1), ts(2027, 1, 1))
    assert period_bounds("month", ts(2026, 2, 3)) == (ts(2026, 2, 1), ts(2026, 3, 1))
    assert period_label("day", ts(2026, 2, 3)) == "day:2026-02-03"
    assert period_label("month", ts(2026, 2, 1)) == "month:2026-02"
    with pytest.raises(ValueError):
        period_bounds("week", now)


def test_since() -> None:
    now = ts(2026, 3, 10, 12)
    assert parse_since(None) is None and parse_since("  ") is None
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("1.5h", now) == now - 5400
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2w", now) == now - 14 * 86400
    assert parse_since("today", now) == ts(2026, 3, 10)
    assert parse_since("2026-03-01", now) == ts(2026, 3, 1)
    assert parse_since("2026-03-01T06:00", now) == ts(2026, 3, 1, 6)
    assert parse_since("2026-03-01T06:00+02:00", now) == ts(2026, 3, 1, 4)
    assert parse_since("2026-03-01T06:00Z", now) == ts(2026, 3, 1, 6)
    with pytest.raises(ValueError, match="7d"):
        parse_since("last tuesday", now)
