"""``python -m benchmarks.reliability``: run the fault matrix, the budget race and the soak; write the report."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.reliability.budget import run_budget
from benchmarks.reliability.matrix import CASES, run_fault
from benchmarks.reliability.report import ROOT, write
from benchmarks.reliability.soak import run_soak
from benchmarks.reliability.stack import Stack, Timeouts


def machine() -> dict[str, Any]:
    """Where and on what code the run happened."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"cores": os.cpu_count(), "python": sys.version.split()[0], "shoal_commit": commit,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _budget(stack: Stack, parallel: int) -> dict[str, Any]:
    try:
        result = run_budget(stack, parallel=parallel)
    except Exception as exc:  # noqa: BLE001 - the report says what failed
        return {"error": f"{type(exc).__name__}: {exc}"}
    print(f"budget ({result['limits_store']}): {result}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="N=10 per case and a 2,000-request soak")
    parser.add_argument("--n", type=int, help="requests per fault case (default 50; 10 with --short)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated fault cases")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=15.0, help="seconds without a byte = stuck")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the database / Redis is down")
    parser.add_argument("--soak", type=int, help="soak requests (default 10,000; 2,000 with --short; 0 skips)")
    parser.add_argument("--budget-parallel", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="print the figures, write nothing")
    args = parser.parse_args()
    n = args.n or (10 if args.short else 50)
    soak = args.soak if args.soak is not None else (2_000 if args.short else 10_000)
    timeouts = Timeouts()
    results: dict[str, Any] = {
        "machine": machine(), "matrix": {},
        "args": {"n": n, "concurrency": args.concurrency, "deadline": args.deadline, "outage": args.outage,
                 "first_byte": timeouts.first_byte, "total": timeouts.total, "soak": soak}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        stack = Stack(Path(tmp), timeouts=timeouts).start()
        try:
            for case in [c for c in args.cases.split(",") if c]:
                try:
                    r = run_fault(stack, case, n, concurrency=args.concurrency, deadline=args.deadline,
                                  outage=args.outage)
                except Exception as exc:  # noqa: BLE001 - one broken case must not lose the others' figures
                    r = {"case": case, "error": f"{type(exc).__name__}: {exc}"}
                results["matrix"][case] = r
                print(f"{case}: " + (r.get("error") or f"ok {r['ok']}/{n} lost {r['lost']} truncated "
                                     f"{r['truncated']} stuck {r['stuck']} {r['statuses']}"
                                     + (f" lost stored: {r['lost_stored_kinds']}" if r["lost_stored"] else "")),
                      flush=True)
            results["budget"] = {"redis": _budget(stack, args.budget_parallel)}
        finally:
            stack.close()
        # The in-process ledger is the other implementation: the same race on a server without Redis.
        local = Stack(Path(tmp) / "in-process", timeouts=timeouts, redis=False)
        try:
            local.start()
            results["budget"]["in-process"] = _budget(local, args.budget_parallel)
        finally:
            local.close()
    if soak:
        try:
            results["soak"] = run_soak(soak)
            s = results["soak"]
            print(f"soak: {s['start_mib']} -> {s['end_mib']} MiB over {s['requests']} requests", flush=True)
        except Exception as exc:  # noqa: BLE001
            results["soak"] = {"error": f"{type(exc).__name__}: {exc}"}
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    if not args.no_write:
        json_path, md_path = write(results)
        print(f"wrote {json_path.relative_to(ROOT)} and {md_path.relative_to(ROOT)} in {results['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
