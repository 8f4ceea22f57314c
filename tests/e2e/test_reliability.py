"""The reliability suite's short run: every fault case of the matrix with a small N against a real ``shoal serve``.

Each case must lose nothing (every success has its usage row and stored response),
truncate nothing (no stream ends like a success without its finish) and leave
nothing stuck. ``python -m benchmarks.reliability`` runs the same functions with
N = 50 and writes docs/reliability.md. The harness's own classifier and report are
tested in tests/benchmarks/test_reliability.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from benchmarks.reliability.budget import run_budget
from benchmarks.reliability.matrix import CASES, run_fault
from benchmarks.reliability.stack import PG_URL, REDIS_URL, Stack
from tests.services import require

pytestmark = pytest.mark.e2e

N = 10
CONCURRENCY = 5
OUTAGE_S = 2.5
PATIENCE_S = 5.0
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


@pytest.mark.parametrize("case", CASES)
def test_fault_loses_truncates_and_sticks_nothing(stack: Stack, case: str) -> None:
    result = run_fault(stack, case, N, concurrency=CONCURRENCY, deadline=DEADLINE_S, outage=OUTAGE_S,
                       patience=PATIENCE_S)
    figures = json.dumps({k: result[k] for k in ("ok", "lost", "lost_usage_rows", "lost_stored", "truncated",
                                                 "stuck", "statuses", "by_kind", "usage_rows", "events",
                                                 "truncated_examples")}, indent=1)
    assert result["ok"] > 0, f"{case}: nothing succeeded, so nothing was measured:\n{figures}"
    if case == "kill-9":
        # Usage rows are written in batches every 50 ms (a commit per request would put a disk sync in
        # every request's path), so a kill -9 loses the rows of the last batch window: counted in the report.
        # What a client was told is kept (a stored response) must survive it.
        assert (result["lost_stored"], result["truncated"], result["stuck"]) == (0, 0, 0), f"{case}:\n{figures}"
        return
    assert (result["lost"], result["truncated"], result["stuck"]) == (0, 0, 0), f"{case}:\n{figures}"


def test_a_budget_raced_by_many_requests_is_not_overshot(stack: Stack) -> None:
    """50 requests at once on a key whose budget fits 3 reservations: no more are admitted, nothing is overspent."""
    result = run_budget(stack, parallel=50, budget=0.01)
    assert result["admitted"] > 0, result
    assert (result["admitted_beyond_budget"], result["spend_beyond_budget_usd"]) == (0, 0.0), result
