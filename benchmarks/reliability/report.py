"""``docs/reliability.md`` and ``docs/reliability.json`` from a run's figures (and the other suites' results)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.reliability.matrix import CASES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GRAMMAR = DOCS / "benchmarks" / "grammar-stall.md"

CASE_TEXT = {
    "upstream-500": "upstream answers 500 (every 2nd upstream request)",
    "upstream-429": "upstream answers 429, `retry-after: 1` (every 2nd)",
    "upstream-hang": "upstream never sends a byte (every 2nd)",
    "upstream-reset": "upstream resets the connection (every 2nd)",
    "upstream-drop": "upstream drops the connection mid-answer (every 2nd)",
    "upstream-truncate": "upstream ends its 200 early, no finish / `[DONE]` (every 2nd)",
    "kill-9": "`shoal serve` gets SIGKILL, then restarts",
    "database-down": "PostgreSQL unreachable for the outage",
    "database-stall": "PostgreSQL connections stall (no byte moves) for the outage",
    "redis-down": "Redis unreachable for the outage",
}


def fuzz_results(docs: Path = DOCS) -> tuple[Path, dict[str, Any]] | None:
    """The API fuzzing run's JSON (written by ``benchmarks/fuzz_api.py``), if there is one."""
    found = sorted(p for p in docs.rglob("*.json") if "fuzz" in p.name)
    for path in found:
        try:
            return path, json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None


def _fuzz_section(docs: Path) -> list[str]:
    found = fuzz_results(docs)
    if found is None:
        return ["Not yet measured: no fuzzing results under `docs/` (`benchmarks/fuzz_api.py` writes them).", ""]
    path, data = found
    rel = path.relative_to(docs)
    lines = [f"From [{rel}]({rel}) (written by `benchmarks/fuzz_api.py`, not by this run):", ""]
    scalars = {k: v for k, v in data.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    for k, v in list(scalars.items())[:12]:
        lines.append(f"- {k}: {v}")
    for k, v in data.items():
        if isinstance(v, dict) and v and all(isinstance(x, int) for x in v.values()):
            lines.append(f"- {k}: " + ", ".join(f"{s}: {c}" for s, c in sorted(v.items())))
    return lines + [""]


def _grammar_section(docs: Path) -> list[str]:
    path = docs / "benchmarks" / "grammar-stall.md"
    if not path.exists():
        return ["Not yet measured: `benchmarks/bench_grammar_stall.py` writes "
                "[benchmarks/grammar-stall.md](benchmarks/grammar-stall.md).", ""]
    body = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")][:6]
    return ["From [benchmarks/grammar-stall.md](benchmarks/grammar-stall.md) (its own run):", "",
            *("> " + ln for ln in body), ""]


def _hist(statuses: dict[str, int]) -> str:
    return ", ".join(f"{s}: {c}" for s, c in statuses.items())


def render(results: dict[str, Any], docs: Path = DOCS) -> str:
    """The report as Markdown."""
    m = results["machine"]
    a = results["args"]
    out = ["# Reliability", "",
           f"Measured by `python -m benchmarks.reliability` on {m['date']} at commit `{m['shoal_commit']}` "
           f"({m['cores']} cores, load {m['loadavg_at_start']} at the start; the machine is shared). "
           "Every figure below comes from that run; rerun it after a change.", "",
           "## Fault matrix", "",
           f"A real `shoal serve` (PostgreSQL and Redis behind cuttable proxies, one `type: openai` deployment "
           f"per case on a fault-injecting upstream) takes **N = {a['n']}** requests per case from "
           f"{a['concurrency']} threads of the `openai` client, round-robin over chat, streamed chat, Responses "
           "(stored), streamed Responses (stored) and background Responses. Upstream timeouts: first byte "
           f"{a['first_byte']} s, whole answer {a['total']} s; outages last {a['outage']} s; the client gives "
           f"up after {a['deadline']} s without a byte.", "",
           "- **lost**: the client got a success but its trace is missing: fewer `completed` usage rows than "
           "successes, or a stored response missing / not `completed`.",
           "- **truncated**: a stream that ended without a finish / `[DONE]` / `response.completed` and without "
           "an error event.",
           "- **stuck**: no answer within the deadline, or a stored response left `queued` / `in_progress`.", "",
           "| case | ok | lost | truncated | stuck | statuses |", "|---|---:|---:|---:|---:|---|"]
    for case in CASES:
        r = results["matrix"].get(case)
        if r is None:
            continue
        if "error" in r:
            out.append(f"| {CASE_TEXT[case]} | - | - | - | - | run failed: {r['error']} |")
            continue
        lost = f"**{r['lost']}**" if r["lost"] else "0"
        trunc = f"**{r['truncated']}**" if r["truncated"] else "0"
        stuck = f"**{r['stuck']}**" if r["stuck"] else "0"
        out.append(f"| {CASE_TEXT[case]} | {r['ok']}/{r['n']} | {lost} | {trunc} | {stuck} | {_hist(r['statuses'])} |")
    failing = [c for c in CASES if c in results["matrix"] and "error" not in results["matrix"][c]
               and (results["matrix"][c]["lost"] or results["matrix"][c]["truncated"] or results["matrix"][c]["stuck"])]
    out += ["", "**Cases with anything lost, truncated or stuck: " + (", ".join(f"`{c}`" for c in failing) or "none")
            + ".**"]
    out += ["", "Status keys: an HTTP status; `stream-error` an error event after a 200; `failed` "
            "`response.failed` or a background response that failed; `cut` the connection broke mid-answer; "
            "`conn-error` no connection.", "", "Details per case (usage rows by status; what happened):", ""]
    for case in CASES:
        r = results["matrix"].get(case)
        if r is None or "error" in r:
            continue
        extra = []
        if r["lost"]:
            kinds = ", ".join(f"{k} {c}" for k, c in r.get("lost_stored_kinds", {}).items())
            extra.append(f"lost: {r['lost_usage_rows']} usage rows, {r['lost_stored']} stored responses"
                         + (f" ({kinds})" if kinds else ""))
        if r["stuck"]:
            extra.append(f"stuck: {r['stuck_requests']} requests, {r['stuck_stored']} stored responses")
        events = "; ".join(r["events"])
        out.append(f"- `{case}`: slowest request {r.get('slowest_s', 0):.1f} s; "
                   f"usage rows {_hist(r['usage_rows']) or 'none'}"
                   + (f"; {events}" if events else "") + (f"; {'; '.join(extra)}" if extra else ""))
    out += ["", "## Budget overshoot", ""]
    budgets = {store: b for store, b in (results.get("budget") or {}).items() if "error" not in b}
    if budgets:
        b = next(iter(budgets.values()))
        out += [f"{b['parallel']} chat completions at once (`max_tokens` {b['max_tokens']}) against a key made by "
                f"`shoal keys create --budget {b['budget_usd']}`; the upstream answers in about a second, so all "
                f"are in flight before the first settles. Each request reserves ${b['reservation_usd']:.6f}, so "
                f"{b['reservations_within_budget']} reservations fit in the budget.", "",
                "| limits store | admitted | refused (429) | admitted beyond the budget | reserved beyond "
                "| spend (usage rows) | spend beyond the budget |", "|---|---:|---:|---:|---:|---:|---:|"]
        for store, b in budgets.items():
            out.append(f"| {store} | {b['admitted']} | {b['refused']} | {b['admitted_beyond_budget']} | "
                       f"${b['reserved_beyond_budget_usd']:.6f} | ${b['spend_usd']:.6f} | "
                       f"${b['spend_beyond_budget_usd']:.6f} |")
        out.append("")
        for store, b in budgets.items():
            out.append(f"- {store}: statuses {_hist(b['statuses'])}")
        out.append("")
    for store, b in (results.get("budget") or {}).items():
        if "error" in b:
            out += [f"Not measured with the {store} ledger: {b['error']}.", ""]
    if not results.get("budget"):
        out += ["Not measured in this run.", ""]
    out += ["## API fuzzing", ""] + _fuzz_section(docs)
    out += ["## Grammar stall", ""] + _grammar_section(docs)
    out += ["## Memory over a 10,000-request soak", ""]
    s = results.get("soak")
    if s and "error" not in s:
        out += [f"`shoal serve` in gateway mode (managed key, metering into SQLite) in front of the fast fake "
                f"upstream of `bench_gateway.py`; {s['requests']} requests from {s['threads']} threads of the "
                f"`openai` client, cycling {', '.join(s['kinds'])} ({s['rps']} req/s).", "",
                f"RSS **{s['start_mib']} MiB at the start, {s['end_mib']} MiB at the end** (peak {s['peak_mib']}; "
                f"{s['growth_mib']:+} MiB from the first 1,000 requests to the end). Statuses: {_hist(s['statuses'])}.",
                "", "| requests | " + " | ".join(str(n) for n, _ in s["samples"]) + " |",
                "|---|" + "---:|" * len(s["samples"]),
                "| RSS MiB | " + " | ".join(str(v) for _, v in s["samples"]) + " |", ""]
    else:
        out += [f"Not measured in this run{': ' + s['error'] if s else ''}.", ""]
    out += ["## Rerun", "", "```bash", "pip install -e '.[test,bench]'",
            "python -m benchmarks.reliability            # full: N=50 per case, the soak, the budget race",
            "python -m benchmarks.reliability --short    # N=10, a 2,000-request soak", "```", "",
            "Needs PostgreSQL (127.0.0.1:5432, database `test`, trust auth) and Redis (127.0.0.1:6379); a fresh "
            "database and key prefix are made and dropped. `tests/benchmarks/test_reliability.py` runs the matrix "
            "with a small N and fails on any lost, truncated or stuck request.", ""]
    return "\n".join(out)


def write(results: dict[str, Any], docs: Path = DOCS) -> tuple[Path, Path]:
    """Write ``reliability.json`` (raw figures) and ``reliability.md``."""
    json_path, md_path = docs / "reliability.json", docs / "reliability.md"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path.write_text(render(results, docs))
    return json_path, md_path
