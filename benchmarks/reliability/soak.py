"""Memory over a long run: RSS of ``shoal serve`` sampled every 1,000 requests of a 10,000-request soak.

Shoal runs in gateway mode exactly as in ``bench_gateway.py`` (auth by a managed
key, metering into SQLite, a catalog model on the very fast fake upstream of
``gateway_servers.py``); requests go through the ``openai`` client from a few
threads, cycling through chat, streamed chat, Responses and streamed Responses
(stored, the default).
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai

from benchmarks import bench_gateway
from benchmarks.reliability.calls import call

KINDS = ("chat", "chat_stream", "responses", "responses_stream")
MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    """RSS of ``pid`` and its children, in MiB."""
    import psutil

    root = psutil.Process(pid)
    return round(sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / MIB, 1)


def run_soak(requests: int = 10_000, *, every: int = 1_000, threads: int = 8,
             cap_seconds: float = 600.0) -> dict[str, Any]:
    """Run the soak; RSS samples as (requests done, MiB), start vs end, and the statuses."""
    with tempfile.TemporaryDirectory(prefix="reliability-soak-") as tmp:
        workdir = Path(tmp)
        port = bench_gateway.free_port()
        upstream = bench_gateway.Proc([sys.executable, bench_gateway.__file__, "upstream", "--port", str(port)], 1,
                                      workdir / "upstream.log")
        try:
            time.sleep(0.5)
            shoal, shoal_port, key = bench_gateway.start_shoal(f"http://127.0.0.1:{port}", workdir)
            try:
                return _soak(shoal.pid, f"http://127.0.0.1:{shoal_port}/v1", key or "", requests, every, threads,
                             cap_seconds)
            finally:
                shoal.stop()
        finally:
            upstream.stop()


def _soak(pid: int, base_url: str, key: str, requests: int, every: int, threads: int,
          cap_seconds: float) -> dict[str, Any]:
    api = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    statuses: Counter[str] = Counter()
    samples: list[tuple[int, float]] = [(0, rss_mib(pid))]
    lock = threading.Lock()
    counter = itertools.count()
    done = 0
    until = time.monotonic() + cap_seconds
    started = time.monotonic()

    def worker() -> None:
        nonlocal done
        while time.monotonic() < until:
            i = next(counter)
            if i >= requests:
                return
            out = call(api, KINDS[i % len(KINDS)], 30.0, bench_gateway.MODEL)
            with lock:
                statuses[out.status] += 1
                done += 1
                if done % every == 0:
                    samples.append((done, rss_mib(pid)))

    try:
        with ThreadPoolExecutor(threads) as pool:
            for f in [pool.submit(worker) for _ in range(threads)]:
                f.result()
    finally:
        api.close()
    elapsed = time.monotonic() - started
    return {"requests": done, "threads": threads, "kinds": list(KINDS), "seconds": round(elapsed, 1),
            "rps": round(done / elapsed, 1), "statuses": dict(sorted(statuses.items())), "samples": samples,
            "start_mib": samples[0][1], "end_mib": samples[-1][1], "peak_mib": max(m for _, m in samples),
            "growth_mib": round(samples[-1][1] - samples[1][1], 1) if len(samples) > 1 else 0.0}
