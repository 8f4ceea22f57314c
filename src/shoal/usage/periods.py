"""Budget periods: UTC calendar days and months."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """(start, end) epoch seconds of the UTC ``day`` or ``month`` containing ``now``."""
    at = datetime.fromtimestamp(now, timezone.utc)
    if period == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    elif period == "month":
        start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    else:
        raise ValueError(f"unknown budget period {period!r}: expected day or month")
    return start.timestamp(), end.timestamp()


def period_label(period: str, start: float) -> str:
    """``day:2026-03-01`` or ``month:2026-03``: names a period in counters."""
    at = datetime.fromtimestamp(start, timezone.utc)
    return f"{period}:{at.strftime('%Y-%m-%d' if period == 'day' else '%Y-%m')}"


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """``7d``/``24h``/``30m``/``2w`` ago, ``today``, or an ISO date / datetime (UTC unless it says otherwise)."""
    if value is None or not value.strip():
        return None
    now = time.time() if now is None else now
    text = value.strip()
    match = RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * UNITS[match.group(2)]
    if text.lower() == "today":
        return period_bounds("day", now)[0]
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read since={value!r}: use 7d, 24h, 30m, today, 2026-03-01 "
                         "or 2026-03-01T12:00") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp()
