#!/usr/bin/env python
"""Gateway CPU per request, counted in instructions: Shoal vs. the pass-through floor.

Requests/s on a shared 2-core machine drift by tens of percent between runs; the
number of instructions a gateway executes per relayed request does not. Each
gateway runs under valgrind's callgrind with counting off, serves a warm-up, and
then counts only while ``wrk`` (concurrency 8) relays ``--requests`` non-streaming
chat completions through it to the same fake upstream as ``bench_gateway.py``.
Callgrind leaves out the kernel's socket work (about the same per request for
both), so the pass-through/Shoal ratio of instructions is a pessimistic bound for
their requests/s ratio when the gateway's core is the bottleneck.

Writes ``docs/benchmarks/gateway-cpu.json`` and ``gateway-cpu.md``. Needs Debian's
``valgrind`` and ``wrk``. Rerun::

    apt-get install -y valgrind wrk
    python benchmarks/bench_gateway_cpu.py          # ~6 min
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import (  # noqa: E402 - beside this file
    HOST,
    OUT,
    Proc,
    free_port,
    machine,
    start_passthrough,
    start_shoal,
    wrk,
)

WARMUP = 300
LIMIT_SECONDS = 900
"""Longest a counted run may take (wrk ends as soon as it has its requests)."""


def counted(out_prefix: Path) -> int:
    """Instructions in callgrind's dumps (each file's total; the first dump holds the counted window)."""
    total = 0
    for name in glob.glob(f"{out_prefix}.*"):
        with open(name) as f:
            totals = [int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:"))]
        total += max(totals, default=0)
    return total


def measure(name: str, start: Callable[..., tuple[Proc, int, str | None]], upstream: str, workdir: Path,
            requests: int) -> dict[str, Any]:
    """Instructions per relayed request of one gateway."""
    out = workdir / f"{name}.callgrind"
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
    proc, port, token = start(upstream, workdir, wrap)
    try:
        url = f"http://{HOST}:{port}"
        wrk(url, token, stream=False, conns=8, seconds=LIMIT_SECONDS, workdir=workdir, limit=WARMUP)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        run = wrk(url, token, stream=False, conns=8, seconds=LIMIT_SECONDS, workdir=workdir, limit=requests)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        time.sleep(2)
        instructions = counted(out)
    finally:
        proc.stop()
    if run["errors"] or run["non2xx"] or run["requests"] < requests:
        raise RuntimeError(f"{name}: {run['requests']} requests, {run['errors']} errors, {run['non2xx']} non-2xx")
    per = instructions / run["requests"]
    print(f"   {name}: {run['requests']} requests, {per / 1000:.1f} k instructions per request", flush=True)
    return {"requests": run["requests"], "instructions": instructions, "instructions_per_request": round(per)}


def write_outputs(results: dict[str, Any]) -> None:
    """``gateway-cpu.json`` and the table in ``gateway-cpu.md``."""
    (OUT / "gateway-cpu.json").write_text(json.dumps(results, indent=2) + "\n")
    g = results["gateways"]
    ratio = g["passthrough"]["instructions_per_request"] / g["shoal"]["instructions_per_request"]
    info = results["machine"]
    lines = [
        "# Gateway CPU per request (instructions)",
        "",
        "Instructions each gateway executes to relay one non-streaming chat completion to the fake upstream of "
        "[gateway.md](gateway.md), counted by valgrind's callgrind over a fixed number of requests (wrk, "
        "concurrency 8) after a warm-up. Unlike requests/s on a shared machine, these counts repeat within about "
        "a percent from run to run. Callgrind counts the process's own instructions, not the kernel's socket "
        "work, which is about the same per request for both; so the pass-through/Shoal ratio here is a "
        "pessimistic bound for the requests/s ratio of a gateway whose core is the bottleneck.",
        "",
        "| gateway | requests counted | k instructions per request |",
        "|---|---:|---:|",
        *(f"| {name} | {r['requests']:,} | {r['instructions_per_request'] / 1000:,.1f} |" for name, r in g.items()),
        "",
        f"Pass-through / Shoal: **{ratio:.3f}** (the requests/s target is 0.5).",
        "",
        f"Machine: {info['cpu']}, Python {info['python']}; Shoal commit {info['shoal_commit']}; {info['date']}.",
        "",
        "Rerun: `apt-get install -y valgrind wrk && python benchmarks/bench_gateway_cpu.py`. "
        "Raw numbers: [gateway-cpu.json](gateway-cpu.json).",
        "",
    ]
    (OUT / "gateway-cpu.md").write_text("\n".join(lines))


def main(args: argparse.Namespace) -> int:
    for tool in ("valgrind", "callgrind_control", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install -y valgrind wrk)", file=sys.stderr)
            return 2
    results: dict[str, Any] = {"machine": machine(), "requests": args.requests, "gateways": {}}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-cpu-") as tmp:
        workdir = Path(tmp)
        up_port = free_port()
        upstream = Proc([sys.executable, str(Path(__file__).with_name("bench_gateway.py")), "upstream",
                         "--port", str(up_port)], 1, workdir / "upstream.log")
        try:
            time.sleep(0.5)
            for name, start in (("passthrough", start_passthrough), ("shoal", start_shoal)):
                results["gateways"][name] = measure(name, start, f"http://{HOST}:{up_port}", workdir, args.requests)
        finally:
            upstream.stop()
    write_outputs(results)
    print(f"wrote {OUT}/gateway-cpu.json and gateway-cpu.md")
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests counted per gateway")
    return main(parser.parse_args())


if __name__ == "__main__":
    sys.exit(cli())
