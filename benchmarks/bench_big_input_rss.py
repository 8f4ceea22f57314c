#!/usr/bin/env python
"""Server RSS before and after one huge request (10 MB of ``instructions``), with the code on PYTHONPATH.

Starts ``shoal serve`` (test model, ``--parallel 2``), reads its VmRSS from /proc, sends
the request, waits until the server is idle, reads VmRSS again. Run it once against
the old code and once against the new to compare::

    PYTHONPATH=/path/to/old/src python benchmarks/bench_big_input_rss.py --model smollm2=PATH.gguf
    python benchmarks/bench_big_input_rss.py --model smollm2=PATH.gguf

Variants (``--variant``): ``responses`` (stored, the default), ``responses-nostore``,
``chat`` (the same text as a system message): which path holds the memory.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SIZE = 10 * 1024 * 1024


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The process's resident set (``VmHWM``: its peak so far), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def post(port: int, path: str, body: dict[str, object]) -> tuple[int, str, float]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return resp.status, resp.read()[:200].decode(errors="replace"), time.perf_counter() - start
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:300].decode(errors="replace"), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", choices=["responses", "responses-nostore", "chat"], default="responses")
    args = parser.parse_args()
    model_id = args.model.split("=", 1)[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SHOAL_HOME": tmp}
        proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", "--model", args.model, "--port", str(port),
                                 "--parallel", "2", "--threads", "1", "--max-body-bytes", str(32 * 1024 * 1024)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.2)
            small = {"model": model_id, "input": "hi", "max_output_tokens": 4}
            post(port, "/v1/responses", small)  # warm: the first request's one-off allocations
            time.sleep(1)
            before, peak_before = rss_mib(proc.pid), rss_mib(proc.pid, "VmHWM")
            text = "All work and no play makes Jack a dull boy. " * (SIZE // 44)
            if args.variant == "chat":
                status, head, took = post(port, "/v1/chat/completions", {
                    "model": model_id, "max_tokens": 4,
                    "messages": [{"role": "system", "content": text}, {"role": "user", "content": "hi"}]})
            else:
                status, head, took = post(port, "/v1/responses", {**small, "instructions": text,
                                                                  "store": args.variant == "responses"})
            time.sleep(3)
            after, peak = rss_mib(proc.pid), rss_mib(proc.pid, "VmHWM")
            print(json.dumps({"variant": args.variant, "status": status, "seconds": round(took, 2),
                              "rss_before_mib": round(before), "rss_after_mib": round(after),
                              "peak_before_mib": round(peak_before), "peak_mib": round(peak), "answer": head[:160]}))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
