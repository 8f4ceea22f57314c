#!/usr/bin/env python
"""Embeddings per second at batch 1 and batch 32: Shoal's ``/v1/embeddings`` against llama.cpp called directly.

The baseline ("direct") drives ``xllamacpp.Server.handle_embeddings`` in this
process, configured as :class:`shoal.backends.local.embedder.LocalEmbedder`
configures it (embedding mode, pooling, L2 normalisation, unified KV cache,
parallel slots, micro-batch = context). The other side ("shoal") is a real
``shoal serve`` with the same model and settings in its catalog, called with the
official ``openai`` client (its default: base64 vectors, decoded by the SDK), so
the difference is everything Shoal adds: HTTP, keys, routing, metering, encoding.
A side is a callable taking a list of inputs and returning the number of vectors.

Each size runs ``--rounds`` timed calls per side after one warm-up call each, the
two sides interleaved call by call (the order alternating), so a noisy neighbour on
a shared machine hits both alike; the report gives the median seconds per call,
embeddings per second (inputs / median) and the ratio shoal / direct.
Inputs are short English sentences of 8-16 words, distinct per call so no
cache can help.

Run from the repository root::

    PYTHONPATH=src python benchmarks/embeddings.py                  # SmolLM2-135M, 5 rounds
    PYTHONPATH=src python benchmarks/embeddings.py --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Side = Callable[[list[str]], int]
"""Embeds the inputs it is given; returns how many vectors came back."""

_WORDS = ("river", "engine", "quiet", "market", "signal", "garden", "orbit", "ledger", "copper", "winter",
          "harbor", "pencil", "thunder", "violet", "canyon", "rocket")


def sentences(count: int, salt: int) -> list[str]:
    """``count`` distinct sentences of 8-16 words; ``salt`` makes each call's set new."""
    out = []
    for i in range(count):
        n = 8 + (i + salt) % 9
        words = [_WORDS[(i * 7 + salt * 3 + k * 5) % len(_WORDS)] for k in range(n)]
        out.append(f"{salt}-{i}: " + " ".join(words) + ".")
    return out


def measure(sides: dict[str, Side], batch: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Median wall time of ``rounds`` calls of ``batch`` inputs per side (after one warm-up call each),
    interleaved call by call."""
    for name, side in sides.items():
        if side(sentences(batch, salt=10_000 + batch)) != batch:
            raise RuntimeError(f"{name}: warm-up at batch {batch} returned the wrong number of vectors")
    samples: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        inputs = sentences(batch, salt=r * 1_000 + batch)
        for name in names if r % 2 == 0 else reversed(names):
            started = time.perf_counter()
            got = sides[name](inputs)
            samples[name].append(time.perf_counter() - started)
            if got != batch:
                raise RuntimeError(f"{name}: batch {batch} returned {got} vectors")
    out = {}
    for name, times in samples.items():
        median = statistics.median(times)
        out[name] = {"batch": batch, "rounds": rounds, "seconds": times, "median_seconds": median,
                     "embeddings_per_second": batch / median}
    return out


def shoal_side(path: Path, *, pooling: str, parallel: int, ctx_per_slot: int, threads: int,
               workdir: Path) -> tuple[Side, Callable[[], None]]:
    """A real ``shoal serve`` on 127.0.0.1 serving the model for embeddings; returns the side and its stop."""
    import socket
    import subprocess

    import openai

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = workdir / "shoal.yaml"
    config.write_text(f"""models:
  - id: bench-embed
    context_length: {ctx_per_slot}
    capabilities: [embeddings]
    deployments: [{{type: local, path: '{path}', pooling: {pooling}, parallel: {parallel},
                   ctx_per_slot: {ctx_per_slot}, threads: {threads}}}]
""")
    env = {**os.environ, "SHOAL_HOME": str(workdir)}
    log = (workdir / "shoal.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", "--port", str(port), "--config",
                             str(config), "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"shoal serve did not start; see {workdir / 'shoal.log'}") from None
            time.sleep(0.2)

    def run(inputs: list[str]) -> int:
        return len(client.embeddings.create(model="bench-embed", input=inputs).data)

    def stop() -> None:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    return run, stop


def direct_side(path: Path, *, pooling: str, parallel: int, ctx_per_slot: int, threads: int) -> Side:
    """llama.cpp through xllamacpp, no Shoal code on the path (the baseline)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.embedding = True
    params.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{pooling.upper()}")
    params.embd_normalize = 2
    params.n_parallel = parallel
    params.kv_unified = True
    params.n_ctx = params.n_batch = params.n_ubatch = ctx_per_slot * parallel
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.cpuparams.poll = params.cpuparams_batch.poll = 0  # as Shoal sets it: idle means idle
    params.verbosity = 1
    server = xllamacpp.Server(params)

    def run(inputs: list[str]) -> int:
        reply = server.handle_embeddings({"input": inputs, "encoding_format": "float"})
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return len(reply["data"])

    return run


def plot(report: dict[str, Any], path: Path) -> None:
    """Embeddings/s per batch size, direct vs shoal, with the ratio over each pair of bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    batches = [row["batch"] for row in results["direct"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    width = 0.38
    for offset, name in ((-width / 2, "direct"), (width / 2, "shoal")):
        values = [row["embeddings_per_second"] for row in results[name]]
        ax.bar([i + offset for i in range(len(batches))], values, width, label=name)
    for i, row in enumerate(results.get("ratio", [])):
        top = max(results["direct"][i]["embeddings_per_second"], results["shoal"][i]["embeddings_per_second"])
        ax.text(i, top * 1.02, f"{row['shoal_over_direct']:.2f}x", ha="center")
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("embeddings / s (median)")
    ax.set_title(f"/v1/embeddings vs llama.cpp direct\n{report['model']}", fontsize=10)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Run the baseline at batch 1 and 32 and print (and optionally save) the numbers."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="packaged model name or GGUF path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--ctx-per-slot", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--direct-only", action="store_true", help="measure only llama.cpp called directly")
    parser.add_argument("--plot", type=Path, help="also draw the results (PNG) here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or any(b < 1 for b in args.batches):
        parser.error("--rounds and --batches must be positive")

    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    path, packaged = resolve_model_path(args.model, default_cache_dir())
    pooling = packaged.embedding.pooling if packaged and packaged.embedding else "mean"
    import tempfile

    started = time.perf_counter()
    side = direct_side(path, pooling=pooling, parallel=args.parallel, ctx_per_slot=args.ctx_per_slot,
                       threads=args.threads)
    load_seconds = time.perf_counter() - started
    sides: dict[str, Side] = {"direct": side}
    stop: Callable[[], None] | None = None
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        try:
            if not args.direct_only:
                sides["shoal"], stop = shoal_side(path, pooling=pooling, parallel=args.parallel,
                                                  ctx_per_slot=args.ctx_per_slot, threads=args.threads,
                                                  workdir=Path(tmp))
            runs = [measure(sides, b, args.rounds) for b in args.batches]
        finally:
            if stop is not None:
                stop()
    results = {name: [run[name] for run in runs] for name in sides}
    if "shoal" in results:
        results["ratio"] = [{"batch": d["batch"], "shoal_over_direct": s["embeddings_per_second"]
                             / d["embeddings_per_second"]} for d, s in zip(results["direct"], results["shoal"])]
    report = {
        "model": path.name, "pooling": pooling, "parallel": args.parallel, "ctx_per_slot": args.ctx_per_slot,
        "threads": args.threads, "load_seconds": load_seconds, "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0], "python": platform.python_version(), "results": results,
    }
    for name, rows in results.items():
        if name == "ratio":
            for row in rows:
                print(f"ratio   batch {row['batch']:3d}: shoal / direct = {row['shoal_over_direct']:.3f}")
            continue
        for row in rows:
            print(f"{name:7s} batch {row['batch']:3d}: {row['embeddings_per_second']:8.1f} embeddings/s "
                  f"(median {row['median_seconds'] * 1000:.1f} ms/call over {row['rounds']} rounds)")
    print(f"model {path.name}, load {load_seconds:.2f} s, 1-min load average {report['loadavg_1m']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.plot and "shoal" in results:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
