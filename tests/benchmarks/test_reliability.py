"""The reliability harness itself: the request classifier (against the fault upstream, no Shoal) and the report.

The fault matrix against a real ``shoal serve`` is tests/e2e/test_reliability.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.reliability.calls import call, client
from benchmarks.reliability.loop import LoopThread
from benchmarks.reliability.report import render
from benchmarks.reliability.upstream import MODEL, FaultUpstream


def test_report_says_what_was_not_measured(tmp_path: Path) -> None:
    results = {"machine": {"date": "d", "shoal_commit": "abc", "cores": 2, "loadavg_at_start": [1.0]},
               "args": {"n": 2, "concurrency": 1, "deadline": 1, "outage": 1, "first_byte": 1, "total": 1},
               "matrix": {"upstream-500": {"case": "upstream-500", "n": 2, "ok": 1, "lost": 1, "lost_usage_rows": 1,
                                           "lost_stored": 0, "truncated": 0, "stuck": 0, "stuck_requests": 0,
                                           "stuck_stored": 0, "statuses": {"200": 1, "502": 1},
                                           "usage_rows": {"completed": 0}, "events": []}},
               "budget": {"redis": {"parallel": 50, "budget_usd": 0.01, "max_tokens": 16, "reservation_usd": 0.0033,
                                    "reservations_within_budget": 3, "admitted": 4, "refused": 46,
                                    "admitted_beyond_budget": 1, "reserved_beyond_budget_usd": 0.0032,
                                    "spend_usd": 0.00188, "spend_beyond_budget_usd": 0.0,
                                    "statuses": {"200": 4, "429 insufficient_quota": 46}},
                          "in-process": {"error": "RuntimeError: no database"}}}
    text = render(results, tmp_path)
    assert "| upstream answers 500 (every 2nd upstream request) | 1/2 | **1** | 0 | 0 | 200: 1, 502: 1 |" in text
    assert "**Cases with anything lost, truncated or stuck: `upstream-500`.**" in text
    assert "| redis | 4 | 46 | 1 | $0.003200 | $0.001880 | $0.000000 |" in text
    assert "- redis: statuses 200: 4, 429 insufficient_quota: 46" in text
    assert "Not measured with the in-process ledger: RuntimeError: no database." in text
    assert "Memory over a 10,000-request soak\n\nNot measured in this run." in text
    assert "API fuzzing\n\nNot yet measured" in text
    assert "Grammar stall\n\nNot yet measured" in text
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "fuzz-api.json").write_text(json.dumps({"cases": 1200, "statuses": {"400": 7}}))
    (tmp_path / "benchmarks" / "grammar-stall.md").write_text("# Grammar stall\n\nOther requests waited 12 ms.\n")
    text = render(results, tmp_path)
    assert "- cases: 1200" in text and "- statuses: 400: 7" in text
    assert "> Other requests waited 12 ms." in text


@pytest.mark.parametrize(("fault", "kind", "expected"), [
    (None, "chat_stream", ("200", True, False)),
    (None, "chat", ("200", True, False)),
    ("truncate", "chat_stream", ("200", False, True)),
    ("truncate", "chat", ("200", False, True)),
    ("drop", "chat_stream", ("cut", False, False)),
    ("500", "chat", ("500", False, False)),
])
def test_calls_classify_what_the_client_sees(fault: str | None, kind: str, expected: tuple[str, bool, bool]) -> None:
    """The classifier, straight against the fault upstream (no Shoal): a clean early end is a truncation."""
    loop = LoopThread()
    upstream = FaultUpstream(gap=0.001)
    try:
        loop.run(upstream.start())
        upstream.fault, upstream.every = fault, 1
        api = client(upstream.url, "unused", 5.0)
        try:
            out = call(api, kind, 5.0, MODEL)
        finally:
            api.close()
        assert (out.status, out.ok, out.truncated) == expected, out
    finally:
        loop.run(upstream.stop())
        loop.close()
