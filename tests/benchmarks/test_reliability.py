"""The reliability suite's short run: every fault case of the matrix with a small N against a real ``shoal serve``.

Each case must lose nothing (every success has its usage row and stored response),
truncate nothing (no stream ends like a success without its finish) and leave
nothing stuck. ``python -m benchmarks.reliability`` runs the same functions with
N = 50 and writes docs/reliability.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.reliability.calls import call, client
from benchmarks.reliability.loop import LoopThread
from benchmarks.reliability.matrix import CASES, run_fault
from benchmarks.reliability.report import render
from benchmarks.reliability.stack import PG_URL, REDIS_URL, Stack
from benchmarks.reliability.upstream import MODEL, FaultUpstream
from tests.services import require

N = 10
CONCURRENCY = 5
OUTAGE_S = 3.0
DEADLINE_S = 15.0
"""Above the longest answer the deployment's timeouts allow (two whole-answer attempts of 5 s and a backoff)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL and Redis behind proxies, the fault upstream and ``shoal serve``, for the whole module."""
    require(PG_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    running = Stack(tmp_path_factory.mktemp("reliability")).start()
    try:
        yield running
    finally:
        running.close()


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES)
def test_fault_loses_truncates_and_sticks_nothing(stack: Stack, case: str) -> None:
    result = run_fault(stack, case, N, concurrency=CONCURRENCY, deadline=DEADLINE_S, outage=OUTAGE_S)
    figures = json.dumps({k: result[k] for k in ("ok", "lost", "lost_usage_rows", "lost_stored", "truncated",
                                                 "stuck", "statuses", "by_kind", "usage_rows", "events",
                                                 "truncated_examples")}, indent=1)
    assert result["ok"] > 0, f"{case}: nothing succeeded, so nothing was measured:\n{figures}"
    assert (result["lost"], result["truncated"], result["stuck"]) == (0, 0, 0), f"{case}:\n{figures}"


def test_report_says_what_was_not_measured(tmp_path: Path) -> None:
    results = {"machine": {"date": "d", "shoal_commit": "abc", "cores": 2, "loadavg_at_start": [1.0]},
               "args": {"n": 2, "concurrency": 1, "deadline": 1, "outage": 1, "first_byte": 1, "total": 1},
               "matrix": {"upstream-500": {"case": "upstream-500", "n": 2, "ok": 1, "lost": 1, "lost_usage_rows": 1,
                                           "lost_stored": 0, "truncated": 0, "stuck": 0, "stuck_requests": 0,
                                           "stuck_stored": 0, "statuses": {"200": 1, "502": 1},
                                           "usage_rows": {"completed": 0}, "events": []}}}
    text = render(results, tmp_path)
    assert "| upstream answers 500 (every 2nd upstream request) | 1/2 | **1** | 0 | 0 | 200: 1, 502: 1 |" in text
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
