#!/usr/bin/env python
"""Embeddings per second at batch 1 and batch 32: the llama.cpp baseline (skeleton).

The baseline ("direct") drives ``xllamacpp.Server.handle_embeddings`` in this
process, configured as :class:`shoal.backends.local.embedder.LocalEmbedder`
configures it (embedding mode, pooling, L2 normalisation, unified KV cache,
parallel slots, micro-batch = context), so a Shoal-over-HTTP side added later
measures only what Shoal adds.  A side is a callable taking a list of inputs
and returning the number of vectors; :func:`measure` times it.

Each size runs ``--rounds`` timed calls after one warm-up call; the report
gives the median seconds per call and embeddings per second (inputs / median).
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


def measure(side: Side, batch: int, rounds: int) -> dict[str, Any]:
    """Median wall time of ``rounds`` calls of ``batch`` inputs (after one warm-up call)."""
    if side(sentences(batch, salt=10_000 + batch)) != batch:
        raise RuntimeError(f"warm-up at batch {batch} returned the wrong number of vectors")
    samples = []
    for r in range(rounds):
        inputs = sentences(batch, salt=r * 1_000 + batch)
        started = time.perf_counter()
        got = side(inputs)
        samples.append(time.perf_counter() - started)
        if got != batch:
            raise RuntimeError(f"batch {batch} returned {got} vectors")
    median = statistics.median(samples)
    return {"batch": batch, "rounds": rounds, "seconds": samples, "median_seconds": median,
            "embeddings_per_second": batch / median}


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
    params.verbosity = 1
    server = xllamacpp.Server(params)

    def run(inputs: list[str]) -> int:
        reply = server.handle_embeddings({"input": inputs, "encoding_format": "float"})
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return len(reply["data"])

    return run


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
    args = parser.parse_args(argv)
    if args.rounds < 1 or any(b < 1 for b in args.batches):
        parser.error("--rounds and --batches must be positive")

    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    path, packaged = resolve_model_path(args.model, default_cache_dir())
    pooling = packaged.embedding.pooling if packaged and packaged.embedding else "mean"
    started = time.perf_counter()
    side = direct_side(path, pooling=pooling, parallel=args.parallel, ctx_per_slot=args.ctx_per_slot,
                       threads=args.threads)
    load_seconds = time.perf_counter() - started
    results = {"direct": [measure(side, b, args.rounds) for b in args.batches]}
    report = {
        "model": path.name, "pooling": pooling, "parallel": args.parallel, "ctx_per_slot": args.ctx_per_slot,
        "threads": args.threads, "load_seconds": load_seconds, "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0], "python": platform.python_version(), "results": results,
    }
    for name, rows in results.items():
        for row in rows:
            print(f"{name:7s} batch {row['batch']:3d}: {row['embeddings_per_second']:8.1f} embeddings/s "
                  f"(median {row['median_seconds'] * 1000:.1f} ms/call over {row['rounds']} rounds)")
    print(f"model {path.name}, load {load_seconds:.2f} s, 1-min load average {report['loadavg_1m']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
