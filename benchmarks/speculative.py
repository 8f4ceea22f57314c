#!/usr/bin/env python
"""Speculative decoding on the CPU: raw llama.cpp vs Shoal plain, with a draft model, with n-gram lookup.

Four sides, all serving qwen2.5-coder-1.5b-instruct (Q4_K_M) with the same engine
settings (parallel slots, context per slot, threads, Jinja template, prompt caching):

* ``raw``: llama.cpp's server through xllamacpp in a subprocess (this file with
  ``--raw-worker``), called in-process with ``handle_chat_completions``: no HTTP and
  no Shoal code on the path (token times taken in its callback);
* ``plain``, ``draft``, ``ngram``: one ``shoal serve`` process each (so no side slows another
  by sharing its process): no speculation; qwen2.5-coder-0.5b-instruct drafting; prompt
  lookup (``draft: ngram``).

Shoal is driven with streamed ``/v1/chat/completions`` over 127.0.0.1, all at
temperature 0, tokens counted from the streamed ``usage``. Two workloads: ``free``
(write new code) and ``edit`` (rename one function of a module and print the module
whole: the answer repeats most of the prompt). Every round runs each workload on every side in
turn (rotating the order), one stream at a time; then each workload with 4 concurrent
streams per side. Decode tokens/s = (tokens - 1) / (last token - first token); the
drafted/accepted counts come from Shoal's /metrics around each request.

Writes ``docs/benchmarks/speculative/results.json``, ``README.md`` and ``speculative.png``.

    python benchmarks/speculative.py --quick      # smoke: few tokens, one round (~3 min)
    python benchmarks/speculative.py              # the measurement: 5 rounds (~25 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "speculative"
TARGET = "qwen2.5-coder-1.5b-instruct"
DRAFT = "qwen2.5-coder-0.5b-instruct"
SIDES = ("raw", "plain", "draft", "ngram")
PARALLEL, CTX, THREADS = 4, 2048, 2

FREE = ("Write a complete Python module implementing a thread-safe LRU cache with time-to-live expiry, "
        "statistics and a decorator for memoizing functions. Include docstrings and type hints. Output only code.")
EDIT_SOURCE = REPO / "src" / "shoal" / "usage" / "periods.py"
EDIT = ("In the Python module below, rename the function `period_label` to `format_period`. "
        "Output the whole modified module and nothing else.\n\n```python\n{code}```")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_path(name: str) -> Path:
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    return resolve_model_path(name, default_cache_dir())[0]


# --------------------------------------------------------------------------- sides


def raw_worker() -> None:
    """llama.cpp's server (configured as Shoal's plain engine), driven in-process, no HTTP.

    Reads one JSON command per stdin line (``prompt``, ``max_tokens``, ``streams``), runs
    that many concurrent streamed completions with ``handle_chat_completions`` (one thread
    each, token times taken in its callback) and answers one JSON line of results.
    """
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path(TARGET))
    params.n_parallel = PARALLEL
    params.n_ctx = CTX * PARALLEL
    params.use_jinja = True
    params.cache_prompt = True
    params.cpuparams.n_threads = THREADS
    params.cpuparams_batch.n_threads = THREADS
    params.cpuparams.poll = 0
    params.verbosity = 1
    server = xllamacpp.Server(params)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        results: list[dict[str, Any]] = []

        def one(command: dict[str, Any], results: list[dict[str, Any]]) -> None:
            body = {"messages": [{"role": "user", "content": command["prompt"]}], "stream": True,
                    "stream_options": {"include_usage": True}, "cache_prompt": True,
                    "max_tokens": command["max_tokens"], "temperature": 0}
            started = time.perf_counter()
            times: list[float] = []
            text: list[str] = []
            usage: dict[str, Any] = {}

            def on_chunk(chunk: dict[str, Any]) -> bool:
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        times.append(time.perf_counter())
                        text.append(piece)
                usage.update(chunk.get("usage") or {})
                return False

            server.handle_chat_completions(body, on_chunk)
            results.append(measured(started, times[0] if times else None, times[-1] if times else None,
                                    time.perf_counter(), int(usage.get("completion_tokens") or 0), "".join(text)))

        threads = [threading.Thread(target=one, args=(command, results)) for _ in range(command["streams"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps(results), flush=True)


class Raw:
    """The raw side's worker process."""

    def __init__(self, log: Any) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--raw-worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True)
        if not self._read():
            raise RuntimeError("the raw llama.cpp worker did not start (see its log)")

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def run(self, prompt: str, max_tokens: int, streams: int) -> list[dict[str, Any]]:
        """``streams`` concurrent completions of ``prompt``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"prompt": prompt, "max_tokens": max_tokens, "streams": streams}) + "\n")
        self.proc.stdin.flush()
        results = self._read()
        if results is None:
            raise RuntimeError("the raw llama.cpp worker died (see its log)")
        return list(results)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()


def start_shoal(side: str, workdir: Path, log: Any, ngram_max: int | None) -> tuple[subprocess.Popen[bytes], str]:
    """One ``shoal serve`` serving the target as model ``side`` (its own process: the sides never share one)."""
    port = free_port()
    target, draft = model_path(TARGET), model_path(DRAFT)
    common = f"path: '{target}', parallel: {PARALLEL}, ctx_per_slot: {CTX}, threads: {THREADS}"
    extra = {"plain": "", "draft": f", draft: '{draft}'",
             "ngram": ", draft: ngram" + (f", draft_max: {ngram_max}" if ngram_max else "")}[side]
    home = workdir / side
    home.mkdir()
    config = home / "shoal.yaml"
    config.write_text(f"models:\n  - id: {side}\n    context_length: {CTX}\n"
                      f"    deployments: [{{type: local, {common}{extra}}}]\n")
    env = {**os.environ, "SHOAL_HOME": str(home), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", "--port", str(port), "--config", str(config),
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"shoal serve ({side}) exited while starting (see its log)")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"shoal serve ({side}) did not start in 10 minutes")


# --------------------------------------------------------------------------- measuring


def measured(started: float, first: float | None, last: float | None, ended: float, tokens: int,
             text: str) -> dict[str, Any]:
    """One completion's numbers from its times (first and last content token)."""
    decode = (tokens - 1) / (last - first) if first and last and last > first and tokens > 1 else 0.0
    return {"tokens": tokens, "seconds": ended - started, "ttft": (first or ended) - started,
            "decode_tps": decode, "e2e_tps": tokens / (ended - started), "text": text}


def stream(url: str, model: str, key: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """One streamed chat completion: timings, token count and the text."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = last = None
    text: list[str] = []
    tokens = 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600,
                      headers={"Authorization": f"Bearer {key}"}) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    last = time.perf_counter()
                    first = first or last
                    text.append(piece)
            if chunk.get("usage"):
                tokens = int(chunk["usage"].get("completion_tokens") or 0)
    return measured(started, first, last, time.perf_counter(), tokens, "".join(text))


def drafts(shoal: str) -> dict[str, tuple[float, float]]:
    """Shoal's drafted and accepted token counters per model."""
    out: dict[str, list[float]] = {}
    for line in httpx.get(shoal + "/metrics", timeout=10).text.splitlines():
        if line.startswith("shoal_speculative_tokens_total{"):
            labels, value = line.rsplit(" ", 1)
            model = labels.split('model="')[1].split('"')[0]
            pair = out.setdefault(model, [0.0, 0.0])
            pair[0 if 'outcome="drafted"' in labels else 1] = float(value)
    return {m: (v[0], v[1]) for m, v in out.items()}


def single(side: str, raw: Raw, urls: dict[str, str], prompt: str, max_tokens: int) -> dict[str, Any]:
    if side == "raw":
        return raw.run(prompt, max_tokens, 1)[0]
    shoal = urls[side]
    before = drafts(shoal)
    result = stream(shoal, side, "none", prompt, max_tokens)
    if side in ("draft", "ngram"):
        after = drafts(shoal)
        d0, a0 = before.get(side, (0.0, 0.0))
        d1, a1 = after.get(side, (0.0, 0.0))
        result["drafted"], result["accepted"] = d1 - d0, a1 - a0
    return result


def concurrent(side: str, raw: Raw, urls: dict[str, str], prompt: str, max_tokens: int, streams: int) -> dict[str, Any]:
    # The same prompt in every stream: what is measured is decoding, not four prefills.
    started = time.perf_counter()
    if side == "raw":
        results = raw.run(prompt, max_tokens, streams)
    else:
        results = []
        lock = threading.Lock()

        def one() -> None:
            res = stream(urls[side], side, "none", prompt, max_tokens)
            with lock:
                results.append(res)

        threads = [threading.Thread(target=one) for _ in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in results)
    return {"tokens": tokens, "seconds": wall, "aggregate_tps": tokens / wall,
            "decode_tps_sum": sum(r["decode_tps"] for r in results)}


# --------------------------------------------------------------------------- report


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians per side; ratios against raw's median, raw's best sample (the conservative one) and plain."""
    out: dict[str, Any] = {}
    for workload, by_side in raw["single"].items():
        raw_tps = [r["decode_tps"] for r in by_side["raw"]]
        base, best = statistics.median(raw_tps), max(raw_tps)
        plain = statistics.median(r["decode_tps"] for r in by_side["plain"])
        rows = {}
        for side, runs in by_side.items():
            tps = statistics.median(r["decode_tps"] for r in runs)
            drafted = sum(r.get("drafted", 0) for r in runs)
            accepted = sum(r.get("accepted", 0) for r in runs)
            rows[side] = {"decode_tps": round(tps, 2), "samples": [round(r["decode_tps"], 2) for r in runs],
                          "vs_raw": round(tps / base, 3), "vs_raw_best": round(tps / best, 3),
                          "vs_plain": round(tps / plain, 3),
                          "e2e_tps": round(statistics.median(r["e2e_tps"] for r in runs), 2),
                          "ttft_s": round(statistics.median(r["ttft"] for r in runs), 2),
                          "acceptance": round(accepted / drafted, 3) if drafted else None,
                          "drafted": drafted, "accepted": accepted,
                          "same_text_as_plain": [r["text"] == p["text"] for r, p in zip(runs, by_side["plain"])]}
        out[workload] = rows
    for workload, by_side in raw["multi"].items():
        base = statistics.median(r["decode_tps_sum"] for r in by_side["raw"])
        plain = statistics.median(r["decode_tps_sum"] for r in by_side["plain"])
        for side, runs in by_side.items():
            tps = statistics.median(r["decode_tps_sum"] for r in runs)
            out[workload][side]["streams4_tps"] = round(tps, 2)
            out[workload][side]["streams4_vs_raw"] = round(tps / base, 3)
            out[workload][side]["streams4_vs_plain"] = round(tps / plain, 3)
            out[workload][side]["streams4_e2e_tps"] = round(statistics.median(r["aggregate_tps"] for r in runs), 2)
    return out


def write_report(result: dict[str, Any], out: Path) -> None:
    summary = result["summary"]
    lines = ["# Speculative decoding on the CPU", "",
             f"Model {TARGET} (Q4_K_M), draft {DRAFT}; {PARALLEL} slots x {CTX} tokens, {THREADS} threads. "
             f"{result['rounds']} rounds, {result['max_tokens']} tokens per answer (4-stream: "
             f"{result['max_tokens_multi']} each). Machine: {result['machine']['cpus']} CPUs, load average "
             f"{result['machine']['loadavg_start']} at start, {result['machine']['loadavg_end']} at the end "
             "(shared with other jobs: absolute numbers are noisy).", "",
             "Single stream: median decode tokens/s over the rounds (samples in brackets); `vs raw best` divides by "
             "raw llama.cpp's best sample, the conservative ratio.", "",
             "| workload | side | decode tok/s (samples) | vs raw median | vs raw best | vs plain | end-to-end tok/s "
             "| TTFT s | acceptance | same text as plain |", "|---|---|---|---|---|---|---|---|---|---|"]
    for workload, rows in summary.items():
        for side, r in rows.items():
            acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%} ({r['accepted']:.0f}/{r['drafted']:.0f})"
            same = "-" if side in ("raw", "plain") else f"{sum(r['same_text_as_plain'])}/{len(r['same_text_as_plain'])}"
            lines.append(f"| {workload} | {side} | {r['decode_tps']} ({', '.join(map(str, r['samples']))}) "
                         f"| {r['vs_raw']}x | {r['vs_raw_best']}x | {r['vs_plain']}x | {r['e2e_tps']} | {r['ttft_s']} "
                         f"| {acc} | {same} |")
    lines += ["", "4 streams (the same prompt in each): decode tokens/s summed over the streams, and end to end "
              "(all tokens / wall time, prefill of the slots included).", "",
              "| workload | side | 4-stream decode tok/s | vs raw | vs plain | end-to-end tok/s |", "|---|---|---|---|---|---|"]
    for workload, rows in summary.items():
        for side, r in rows.items():
            if "streams4_tps" in r:
                lines.append(f"| {workload} | {side} | {r['streams4_tps']} | {r['streams4_vs_raw']}x "
                             f"| {r['streams4_vs_plain']}x | {r['streams4_e2e_tps']} |")
    edit, free = summary.get("edit", {}), summary.get("free", {})
    lines += ["", "Targets (single stream, decode tokens/s against raw llama.cpp's best sample):", ""]
    if "ngram" in edit:
        best = max(("draft", "ngram"), key=lambda s: edit[s]["vs_raw_best"])
        ok = edit[best]["vs_raw_best"] >= 1.5
        lines.append(f"- code edit >= 1.5x: best is {best} at {edit[best]['vs_raw_best']}x "
                     f"({edit[best]['vs_plain']}x Shoal plain): {'MET' if ok else 'NOT MET'}")
    for side in ("draft", "ngram"):
        if side in free:
            ok = free[side]["vs_raw_best"] >= 0.95
            lines.append(f"- free generation no more than 5% slower ({side}): {free[side]['vs_raw_best']}x "
                         f"({free[side]['vs_plain']}x Shoal plain): {'MET' if ok else 'NOT MET'}")
    lines += ["", "Rerun: `python benchmarks/speculative.py` (smoke: `--quick`; `--report-only` redoes this page from "
              "results.json). Raw samples: results.json.", ""]
    (out / "README.md").write_text("\n".join(lines))


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, title) in zip(axes, (("decode_tps", "1 stream: decode tokens/s"),
                                      ("streams4_tps", "4 streams: decode tokens/s, summed"))):
        workloads = list(summary)
        width = 0.2
        for i, side in enumerate(SIDES):
            values = [summary[w][side].get(key, 0) for w in workloads]
            ax.bar([x + i * width for x in range(len(workloads))], values, width, label=side)
        ax.set_xticks([x + 1.5 * width for x in range(len(workloads))], workloads)
        ax.set_title(title)
    axes[0].legend()
    fig.suptitle(f"Speculative decoding, {TARGET} on {result['machine']['cpus']} CPUs "
                 f"(load {result['machine']['loadavg_start']})")
    fig.tight_layout()
    fig.savefig(out / "speculative.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="few tokens, one round: proves the script works")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-tokens-multi", type=int, default=64)
    parser.add_argument("--ngram-max", type=int, default=None,
                        help="the n-gram side's draft_max (default: Shoal's own default)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true", help="redo the summary, page and plot from results.json")
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker()
        return
    if args.report_only:
        result = json.loads((args.out / "results.json").read_text())
        result["summary"] = summarize(result)
        (args.out / "results.json").write_text(json.dumps(result, indent=1))
        write_report(result, args.out)
        plot(result, args.out)
        print((args.out / "README.md").read_text())
        return
    if args.quick:
        args.rounds, args.max_tokens, args.max_tokens_multi = 1, 16, 8
    prompts = {"free": FREE, "edit": EDIT.format(code=EDIT_SOURCE.read_text())}
    result: dict[str, Any] = {"rounds": args.rounds, "max_tokens": args.max_tokens, "ngram_max": args.ngram_max,
                              "max_tokens_multi": args.max_tokens_multi, "single": {}, "multi": {},
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "loadavg_start": [round(x, 2) for x in os.getloadavg()]}}
    with tempfile.TemporaryDirectory(prefix="shoal-spec-bench-") as tmp:
        workdir = Path(tmp)
        log = (workdir / "servers.log").open("w")
        raw = Raw(log)
        servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        try:
            for side in SIDES[1:]:
                servers[side] = start_shoal(side, workdir, log, args.ngram_max)
            urls = {side: url for side, (_, url) in servers.items()}
            # Warm up: first-use costs (page faults, the prompt's prefill into the cache) stay out of the samples.
            for prompt in prompts.values():
                for side in SIDES:
                    single(side, raw, urls, prompt, 4)
            print(f"warmed up; load average {os.getloadavg()}", flush=True)
            for rnd in range(args.rounds):
                for workload, prompt in prompts.items():
                    order = SIDES[rnd % 4:] + SIDES[:rnd % 4]
                    for side in order:
                        res = single(side, raw, urls, prompt, args.max_tokens)
                        result["single"].setdefault(workload, {}).setdefault(side, []).append(res)
                        print(f"round {rnd} {workload:4} {side:5} {res['decode_tps']:6.2f} tok/s "
                              f"({res['tokens']} tokens, drafted {res.get('drafted', '-')}, "
                              f"accepted {res.get('accepted', '-')})", flush=True)
            for workload, prompt in prompts.items():
                if args.quick and workload == "edit":
                    continue  # four prefills of the long edit prompt per side: minutes, not a smoke test
                for side in SIDES:
                    res = concurrent(side, raw, urls, prompt, args.max_tokens_multi, streams=4)
                    result["multi"].setdefault(workload, {}).setdefault(side, []).append(res)
                    print(f"4 streams {workload:4} {side:5} {res['decode_tps_sum']:6.2f} tok/s decoding "
                          f"({res['aggregate_tps']:.2f} end to end)", flush=True)
        except Exception:
            log.flush()
            print((workdir / "servers.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            for proc, _ in servers.values():
                proc.terminate()
            raw.close()
            for proc in [proc for proc, _ in servers.values()] + [raw.proc]:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["summary"] = summarize(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    write_report(result, args.out)
    plot(result, args.out)
    print((args.out / "README.md").read_text())


if __name__ == "__main__":
    main()
