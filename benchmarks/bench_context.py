#!/usr/bin/env python
"""What a larger context per slot costs: memory (RSS) and speed (TTFT, tok/s) of ``shoal serve``.

For each (parallel slots, context per slot) configuration, starts ``shoal serve``
with the default model on a free 127.0.0.1 port, then measures, one request at a
time over the official ``openai`` client (streamed Responses):

* RSS of the server once loaded, and again after the long prompt;
* a short prompt: time to first token and decode tok/s (64 output tokens);
* a long prompt (~5.4k tokens, the size of a coding agent's first turn) with a
  fresh prefix each time (no cache help): time to first token.

Writes ``docs/benchmarks/context.json`` and ``context.md``. Run from the repository root::

    python benchmarks/bench_context.py              # 4x4096 (the old default), 4x16384 (the new), 2x16384
    python benchmarks/bench_context.py --configs 4x16384
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks"
START_TIMEOUT_S = 180.0
LONG_PROMPT_WORDS = 1100  # about 5.4k tokens with the Qwen2.5 tokenizer (digits are one token each)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stream(client: openai.OpenAI, model: str, prompt: str, max_tokens: int) -> dict[str, float]:
    """One streamed response: seconds to the first text delta, decode tok/s after it, token counts."""
    started = time.perf_counter()
    first = None
    usage: Any = None
    with client.responses.create(model=model, input=prompt, max_output_tokens=max_tokens, temperature=0,
                                 stream=True) as events:
        for event in events:
            if event.type == "response.output_text.delta" and first is None:
                first = time.perf_counter()
            elif event.type in ("response.completed", "response.incomplete"):
                usage = event.response.usage
    ended = time.perf_counter()
    first = first or ended
    out = usage.output_tokens if usage else 0
    return {"ttft_s": round(first - started, 3), "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": out, "decode_tok_s": round((out - 1) / (ended - first), 1) if out > 1 else 0.0}


def measure(parallel: int, ctx: int, model: str, threads: int, long_words: int = LONG_PROMPT_WORDS) -> dict[str, Any]:
    """Start one server, measure it, stop it."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SHOAL_HOME": home}
        env.pop("SHOAL_API_KEYS", None)
        cmd = [sys.executable, "-m", "shoal.cli", "serve", "--model", model, "--port", str(port),
               "--parallel", str(parallel), "--ctx-per-slot", str(ctx), "--threads", str(threads)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"shoal serve {parallel}x{ctx} did not start")
                time.sleep(0.5)
            rss_loaded = _rss_mib(proc.pid)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0,
                                   timeout=600)
            short = _stream(client, model, "Write a short poem about the sea.", 64)
            words = " ".join(f"item{i}" for i in range(long_words))
            long = _stream(client, model, f"{time.time()} Count the items in this list: {words}", 16)
            return {"parallel": parallel, "ctx_per_slot": ctx, "kv_tokens": parallel * ctx,
                    "rss_loaded_mib": round(rss_loaded), "rss_after_long_mib": round(_rss_mib(proc.pid)),
                    "short": short, "long": long}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def report(results: list[dict[str, Any]], model: str, threads: int) -> str:
    """The Markdown table."""
    lines = [
        "# Context per slot: memory and speed",
        "",
        f"`benchmarks/bench_context.py`, model `{model}`, {threads} threads, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared with other work: read the speed columns as rough). One request at a time.",
        "",
        "| slots x ctx | KV tokens | RSS loaded | RSS after long prompt | short TTFT | decode tok/s | "
        "long prompt (tokens) | long TTFT | prefill tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, lg = r["short"], r["long"]
        prefill = lg["input_tokens"] / lg["ttft_s"] if lg["ttft_s"] else 0
        lines.append(f"| {r['parallel']} x {r['ctx_per_slot']} | {r['kv_tokens']} | {r['rss_loaded_mib']} MiB | "
                     f"{r['rss_after_long_mib']} MiB | {s['ttft_s']:.2f} s | {s['decode_tok_s']} | "
                     f"{lg['input_tokens']} | {lg['ttft_s']:.1f} s | {prefill:.0f} |")
    lines += ["", "With 4096 tokens per slot the long prompt does not fit (a 400, `context_length_exceeded`).", ""]
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, measure every configuration, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="4x4096,4x16384,2x16384", help="PARALLELxCTX, comma-separated")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = []
    for spec in args.configs.split(","):
        parallel, ctx = (int(v) for v in spec.split("x"))
        try:
            results.append(measure(parallel, ctx, args.model, args.threads))
        except openai.BadRequestError as exc:
            print(f"{spec}: {exc}", file=sys.stderr)
            results.append(measure_short_only(parallel, ctx, args.model, args.threads))
        print(json.dumps(results[-1]), flush=True)
        # Written after every configuration, so an interrupted run keeps what it measured.
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "context.json").write_text(json.dumps({"model": args.model, "threads": args.threads,
                                                       "results": results}, indent=2) + "\n")
        (OUT / "context.md").write_text(report(results, args.model, args.threads))


def measure_short_only(parallel: int, ctx: int, model: str, threads: int) -> dict[str, Any]:
    """A configuration whose slots are too small for the long prompt: the long column is left empty."""
    result = measure(parallel, ctx, model, threads, long_words=10)
    result["long"] = {"ttft_s": 0.0, "input_tokens": 0, "output_tokens": 0, "decode_tok_s": 0.0,
                      "note": "does not fit"}
    return result


if __name__ == "__main__":
    main()
