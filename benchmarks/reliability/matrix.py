"""The fault matrix: N requests under one fault, then a count of what was lost, truncated or stuck.

Each case gets its own managed key (with request and budget limits, so the
limits' store is on the path), so its usage rows and stored responses are told
apart from the other cases'. Requests go round-robin over the kinds of
:mod:`~benchmarks.reliability.calls` from ``concurrency`` threads.

* Upstream cases (``upstream-500``, ``-429``, ``-hang``, ``-reset``, ``-drop``, ``-truncate``):
  every second upstream request gets the fault for the whole case.
* ``kill-9``: once a quarter of the requests have ended, ``shoal serve`` gets SIGKILL and
  is started again (same config, data and port); the workers wait for it (new requests
  only; those in flight see what a crash does to them).
* ``database-down`` / ``redis-down``: once a quarter of the requests have ended, the
  proxy in front of PostgreSQL / Redis is cut (connections reset, new ones refused) for
  ``outage`` seconds. Requests are paced over twice the outage, so most meet it.
* ``database-stall``: the same, but the PostgreSQL proxy moves no byte while every
  connection stays open (a network partition rather than a host that is down).

Afterwards (server healthy, services back, a short settle), the database is read
directly: ``lost`` counts successes without a trace (fewer usage rows with status
completed/incomplete than successes, per endpoint; a successful stored response whose
row is missing or not completed), ``stuck`` counts requests with no answer within
the deadline plus stored responses still ``queued``/``in_progress``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.reliability.calls import KINDS, Outcome, call, client, outcome_dict
from benchmarks.reliability.stack import Stack, model_id

UPSTREAM_CASES = ("upstream-500", "upstream-429", "upstream-hang", "upstream-reset", "upstream-drop",
                  "upstream-truncate")
INFRA_CASES = ("kill-9", "database-down", "database-stall", "redis-down")
CASES = UPSTREAM_CASES + INFRA_CASES
OUTAGE_CASES = ("database-down", "database-stall", "redis-down")
DONE_STATUSES = ("completed", "incomplete")
ACTIVE = ("queued", "in_progress")


def run_fault(stack: Stack, case: str, n: int, *, concurrency: int = 8, deadline: float = 15.0,
              outage: float = 5.0, settle: float = 1.0, patience: float = 10.0) -> dict[str, Any]:
    """Run ``n`` requests under ``case`` and count the outcomes (see the module docstring).

    The database is read ``settle`` s after the last request, and again every half second for up to
    ``patience`` s while anything still counts as lost or stuck: a server that writes its rows late
    (a retried flush, a spool replayed after a restart) is not charged for a loss it made good.
    """
    if case not in CASES:
        raise ValueError(f"unknown fault case {case!r}; known: {', '.join(CASES)}")
    assert stack.shoal is not None
    key_id, secret = stack.create_key(f"fault-{case}", rpm=1_000_000, budget_usd=1000.0, budget_period="day")
    api = client(f"{stack.shoal.url}/v1", secret, deadline)
    outcomes: list[Outcome] = []
    gate = threading.Event()
    gate.set()
    pace = (2 * outage / n) if case in OUTAGE_CASES else 0.0
    t0 = time.time()
    started = time.monotonic()
    events: list[str] = []

    def one(i: int) -> Outcome:
        wait = started + i * pace - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        gate.wait(60)
        result = call(api, KINDS[i % len(KINDS)], deadline, model_id(case))
        outcomes.append(result)
        return result

    disruptor = threading.Thread(target=_disrupt, args=(stack, case, outcomes, max(1, n // 4), gate, outage, events),
                                 daemon=True)
    if case.startswith("upstream-"):
        stack.upstream.fault = case.removeprefix("upstream-")
    else:
        disruptor.start()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
    finally:
        stack.upstream.fault = None
        if disruptor.is_alive():
            disruptor.join(outage + 90)
        api.close()
    elapsed = round(time.monotonic() - started, 2)
    _wait_healthy(stack)
    time.sleep(settle)
    until = time.monotonic() + patience
    counts = _count(stack, key_id, t0, outcomes)
    while (counts["lost"] or counts["stuck_stored"]) and time.monotonic() < until:
        time.sleep(0.5)
        counts = _count(stack, key_id, t0, outcomes)
    return {"case": case, "n": n, "concurrency": concurrency, "deadline_s": deadline, "seconds": elapsed,
            "events": events, **counts}


def _disrupt(stack: Stack, case: str, outcomes: list[Outcome], after: int, gate: threading.Event,
             outage: float, events: list[str]) -> None:
    """Wait until ``after`` requests have ended, then break what ``case`` says and mend it."""
    until = time.monotonic() + 120
    while len(outcomes) < after and time.monotonic() < until:
        time.sleep(0.01)
    assert stack.shoal is not None
    mark = time.monotonic()
    if case == "kill-9":
        gate.clear()
        ended = len(outcomes)
        stack.shoal.kill9()
        events.append(f"SIGKILL after {ended} requests ended")
        try:
            stack.restart_shoal()
        finally:
            gate.set()
        events.append(f"restarted, healthy after {time.monotonic() - mark:.1f} s")
        return
    proxy = stack.redis if case == "redis-down" else stack.pg
    stall = case == "database-stall"
    ended = len(outcomes)
    stack.loop.run(proxy.stall() if stall else proxy.cut())
    events.append(f"{case.split('-')[0]} {'stalled' if stall else 'cut'} after {ended} requests ended")
    time.sleep(outage)
    stack.loop.run(proxy.resume() if stall else proxy.restore())
    events.append(f"{'resumed' if stall else 'restored'} after {time.monotonic() - mark:.1f} s")


def _wait_healthy(stack: Stack, timeout: float = 30.0) -> None:
    assert stack.shoal is not None
    until = time.monotonic() + timeout
    while not stack.shoal.healthy() and time.monotonic() < until:
        time.sleep(0.2)


def _count(stack: Stack, key_id: str, t0: float, outcomes: list[Outcome]) -> dict[str, Any]:
    """The case's figures, from the outcomes and the database (read directly).

    Usage rows name no request, so they are matched per endpoint: successes of an
    endpoint minus its ``completed``/``incomplete`` rows. A Responses success missing
    both its row and its stored response counts once (the larger of the two shortfalls).
    """
    rows = stack.query("SELECT endpoint, status, count(*) AS n FROM usage WHERE key_id = $1 "
                       "GROUP BY endpoint, status", key_id)
    usage: Counter[str] = Counter()
    done_rows: Counter[str] = Counter()
    for r in rows:
        usage[r["status"]] += int(r["n"])
        if r["status"] in DONE_STATUSES:
            done_rows[_endpoint(r["endpoint"])] += int(r["n"])
    stored_rows = stack.query("SELECT id, status FROM responses WHERE owner = $1 AND created_at >= $2",
                              key_id, t0 - 1)
    stored = {r["id"]: r["status"] for r in stored_rows}
    ok = [o for o in outcomes if o.ok]
    ok_by: Counter[str] = Counter("chat" if o.kind.startswith("chat") else "responses" for o in ok)
    lost_chat = max(0, ok_by["chat"] - done_rows["chat"])
    lost_resp_rows = max(0, ok_by["responses"] - done_rows["responses"])
    lost_stored = [o for o in ok if o.response_id is not None and stored.get(o.response_id) not in DONE_STATUSES]
    stuck_rows = [rid for rid, status in stored.items() if status in ACTIVE]
    stuck_client = [o for o in outcomes if o.stuck]
    truncated = [o for o in outcomes if o.truncated]
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for o in outcomes:
        by_kind[o.kind][o.status] += 1
    failures = [outcome_dict(o) for o in outcomes if not o.ok][:8]
    return {
        "ok": len(ok), "lost": lost_chat + max(lost_resp_rows, len(lost_stored)),
        "lost_usage_rows": lost_chat + lost_resp_rows, "lost_stored": len(lost_stored),
        "lost_stored_kinds": dict(Counter(f"{o.kind}: {stored.get(o.response_id or '', 'missing')}"
                                          for o in lost_stored)),
        "truncated": len(truncated), "stuck": len(stuck_client) + len(stuck_rows),
        "slowest_s": max((o.seconds for o in outcomes), default=0.0),
        "stuck_requests": len(stuck_client), "stuck_stored": len(stuck_rows),
        "statuses": dict(sorted(Counter(o.status for o in outcomes).items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in by_kind.items()}, "usage_rows": dict(sorted(usage.items())),
        "stored_statuses": dict(Counter(stored.values())), "examples": failures,
        "truncated_examples": [outcome_dict(o) for o in truncated][:4],
    }


def _endpoint(path: str) -> str:
    return "chat" if "chat" in path else "responses"
