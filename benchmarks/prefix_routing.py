#!/usr/bin/env python
"""Prefix (cache-affinity) routing vs. fewest outstanding requests, in one interleaved run.

``--servers`` llama.cpp HTTP servers (llama-server through xllamacpp, in this process, on 127.0.0.1)
serve SmolLM2-135M with ``cache_prompt`` on. One ``shoal serve`` subprocess has a catalog with two
models naming all servers as deployments: ``smol-prefix`` (``balance: prefix``) and ``smol-lo`` (the
default, least outstanding). The workload is multi-turn conversations that share a system prompt
(``--system-words``) and paste a document each turn (``--document-words``), so the history grows
turn by turn; all conversations of a phase run at once, each one turn after another, with the
model's own answers appended. Phases alternate policies (ABBA); each
phase's system prompt starts with a fresh nonce, so every phase starts cold on both servers.

Reported per policy: cache hit ratio (sum of ``cached_tokens`` / sum of prompt tokens, from the
usage Shoal relays), TTFT median and p90 (client side, first content delta), throughput (completion
tokens / phase wall time), and how requests were spread over the servers.

Writes ``docs/benchmarks/prefix-routing/results.json``, ``README.md`` and ``prefix-routing.png``
(``prefix_routing_report.py``; ``--report-only`` rewrites the last two from the first).

Run from the repository root::

    PYTHONPATH=src /work/main/.venv/bin/python benchmarks/prefix_routing.py            # ~10-12 min on 2 cores
    PYTHONPATH=src /work/main/.venv/bin/python benchmarks/prefix_routing.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from prefix_routing_report import POLICIES, plot, report, summarise  # noqa: E402 - beside this file

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "prefix-routing"
MODEL_OF = {"prefix": "smol-prefix", "least_outstanding": "smol-lo"}
WORDS = ("river delta basin current flow bank stream valley source mouth tributary flood plain estuary "
         "meander channel sediment rapids gorge lake reservoir dam bridge ferry harbour mill canal lock "
         "weir spring marsh wetland drought rainfall glacier snowmelt aquifer irrigation navigation").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prose(rng: random.Random, words: int) -> str:
    """Deterministic filler text, ``words`` words in sentences."""
    out, sentence = [], []
    for _ in range(words):
        sentence.append(rng.choice(WORDS))
        if len(sentence) >= rng.randint(8, 14):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


def start_llama(model: Path, threads: int, slots: int, ctx: int, cache_ram_mib: int) -> tuple[Any, str, str]:
    """llama-server (xllamacpp) on a loopback port: (server, base URL with /v1, API key)."""
    import xllamacpp

    key = uuid.uuid4().hex
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.n_parallel = slots
    params.n_ctx = ctx * slots
    params.use_jinja = True
    params.cache_prompt = True
    params.cache_ram_mib = cache_ram_mib
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cpuparams.poll = 0
    params.model_alias = {"smol"}
    params.api_keys = [key]
    params.verbosity = 1
    server = xllamacpp.Server(params)
    return server, str(server.listening_address) + "/v1", key


CATALOG = """
models:
{models}
"""

MODEL = """  - id: {id}
    context_length: {ctx}
    balance: {balance}
    deployments:
{deployments}"""

DEPLOYMENT = """      - type: openai
        name: llama-{n}
        base_url: {url}
        api_key_env: BENCH_UPSTREAM_KEY_{n}
        model: smol
        max_concurrency: {slots}
        timeouts: {{first_byte: 150, read: 150}}
"""


def start_shoal(workdir: Path, urls: list[str], keys: list[str], slots: int, ctx: int,
                abs_threshold: int) -> tuple[subprocess.Popen[bytes], str]:
    """``shoal serve`` with both models over all the servers; waits (bounded) for ``/health``."""
    balances = {"smol-prefix": f"{{policy: prefix, abs_threshold: {abs_threshold}}}", "smol-lo": "least_outstanding"}
    deployments = "".join(DEPLOYMENT.format(n=i + 1, url=url, slots=slots) for i, url in enumerate(urls))
    models = "".join(MODEL.format(id=m, ctx=ctx, balance=b, deployments=deployments) for m, b in balances.items())
    config = workdir / "shoal.yaml"
    config.write_text(CATALOG.format(models=models))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_API_KEYS", "SHOAL_DATABASE_URL")}
    env.update({f"BENCH_UPSTREAM_KEY_{i + 1}": key for i, key in enumerate(keys)})
    env.update(SHOAL_HOME=str(workdir / "home"), PYTHONPATH=str(REPO / "src"))
    log = open(workdir / "shoal.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", "--config", str(config), "--host",
                             "127.0.0.1", "--port", str(port), "--data-dir", str(workdir / "data"),
                             "--log-level", "warning", "--first-byte-deadline", "200"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"shoal serve exited: {(workdir / 'shoal.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url + "/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("shoal serve was not ready within 60 s")


def chat(http: httpx.Client, model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """One streamed chat completion: TTFT, answer, usage, serving deployment."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "seed": 1,
            "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    ttft = None
    text: list[str] = []
    usage: dict[str, Any] = {}
    error = None
    deployment = "?"
    try:
        with http.stream("POST", "/chat/completions", json=body) as resp:
            deployment = resp.headers.get("x-shoal-deployment", "?")
            if resp.status_code != 200:
                error = f"HTTP {resp.status_code}: {resp.read()[:200]!r}"
            for line in resp.iter_lines() if error is None else ():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("error"):
                    error = str(chunk["error"])[:200]
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        ttft = ttft if ttft is not None else time.perf_counter() - started
                        text.append(piece)
                if chunk.get("usage"):
                    usage = chunk["usage"]
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    prompt = int(usage.get("prompt_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {"ttft_s": ttft, "total_s": time.perf_counter() - started, "answer": "".join(text),
            "prompt_tokens": prompt, "cached_tokens": cached, "completion_tokens": int(usage.get("completion_tokens")
                                                                                       or 0),
            "deployment": deployment, "error": error}


def conversation(base: str, model: str, system: str, conv: int, turns: int, doc_words: int, max_tokens: int,
                 pacing: tuple[float, float, int], out: list[dict[str, Any]]) -> None:
    """One conversation, turn after turn, the model's answers appended.

    Conversations start at random within ``pacing[0]`` s and pause ``pacing[1]`` s on average (exponential,
    seeded by the round ``pacing[2]``) between turns, as users do: in lockstep, least outstanding
    sends each turn back to the same server by accident (configuration order breaks its ties).
    """
    rng = random.Random(conv)
    arrivals = random.Random(f"{pacing[2]}-{conv}")  # the same arrivals for both policies of a round
    messages = [{"role": "system", "content": system}]
    time.sleep(arrivals.uniform(0, pacing[0]))
    with httpx.Client(base_url=base, timeout=120, headers={"authorization": "Bearer none"}) as http:
        for turn in range(turns):
            if turn:
                time.sleep(min(3 * pacing[1], arrivals.expovariate(1 / pacing[1])))
            messages.append({"role": "user", "content": f"Document {turn + 1}: {prose(rng, doc_words)}\n"
                                                        f"Question: which word appears most in document {turn + 1}?"})
            result = chat(http, model, messages, max_tokens)
            messages.append({"role": "assistant", "content": result["answer"]})
            out.append({"conversation": conv, "turn": turn, **result})


def phase(base: str, policy: str, conversations: int, turns: int, system_words: int, doc_words: int,
          max_tokens: int, pacing: tuple[float, float, int]) -> dict[str, Any]:
    """All conversations at once on one policy's model; a fresh system prompt (cold caches)."""
    system = f"[session {uuid.uuid4().hex}] You are the river authority's assistant. " + prose(
        random.Random(7), system_words)
    samples: list[dict[str, Any]] = []
    threads = [threading.Thread(target=conversation, args=(base, MODEL_OF[policy], system, c, turns, doc_words,
                                                           max_tokens, pacing, samples))
               for c in range(conversations)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - started
    return {"policy": policy, "wall_s": wall, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, one conversation per server x 2 turns")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each runs both policies once)")
    parser.add_argument("--servers", type=int, default=3, help="llama.cpp servers (deployments of each model)")
    parser.add_argument("--conversations", type=int, default=9, help="conversations at once per phase")
    parser.add_argument("--turns", type=int, default=6, help="turns per conversation")
    parser.add_argument("--system-words", type=int, default=60, help="words of the shared system prompt")
    parser.add_argument("--document-words", type=int, default=150, help="words of the document pasted each turn")
    parser.add_argument("--max-tokens", type=int, default=32, help="completion tokens per turn")
    parser.add_argument("--slots", type=int, default=8, help="llama.cpp slots (parallel sequences) per server")
    parser.add_argument("--ctx", type=int, default=3072, help="context per slot; must hold the last turn")
    parser.add_argument("--start-within", type=float, default=16.0, help="conversations start at random within")
    parser.add_argument("--think", type=float, default=2.0, help="mean pause (s) between a conversation's turns")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per server")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true", help="rewrite README.md and the plot from results.json")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((args.out / "results.json").read_text())
        result["summary"] = summarise(result["phases"])
        plot(result["summary"], args.out / "prefix-routing.png")
        report(result, args.out / "README.md")
        return
    if args.servers < 1:
        parser.error("--servers must be at least 1")
    if args.quick:
        args.rounds, args.conversations, args.turns, args.start_within = 1, args.servers, 2, 4.0
    cfg = {"servers": args.servers, "slots": args.slots, "ctx": args.ctx, "threads": args.threads,
           "cache_ram_mib": 512, "conversations": args.conversations, "turns": args.turns,
           "system_words": args.system_words, "doc_words": args.document_words, "max_tokens": args.max_tokens,
           "abs_threshold": 2, "rounds": args.rounds, "start_within_s": args.start_within, "think_s": args.think}
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    model, _ = resolve_model_path("smollm2-135m", default_cache_dir())
    begun = time.perf_counter()
    load_start = os.getloadavg()
    servers = [start_llama(model, cfg["threads"], cfg["slots"], cfg["ctx"], cfg["cache_ram_mib"])
               for _ in range(cfg["servers"])]
    with tempfile.TemporaryDirectory(prefix="shoal-prefix-bench-") as tmp:
        proc, base = start_shoal(Path(tmp), [s[1] for s in servers], [s[2] for s in servers], cfg["slots"],
                                 cfg["ctx"], cfg["abs_threshold"])
        try:
            phases = []
            for rnd in range(args.rounds):
                order = POLICIES if rnd % 2 == 0 else POLICIES[::-1]
                for policy in order:
                    ph = phase(base, policy, args.conversations, args.turns, cfg["system_words"], cfg["doc_words"],
                               cfg["max_tokens"], (cfg["start_within_s"], cfg["think_s"], rnd))
                    print(f"round {rnd + 1} {policy}: {ph['wall_s']:.1f} s, {len(ph['samples'])} requests, "
                          f"load before {ph['loadavg_before'][0]:.1f}", flush=True)
                    phases.append(ph)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    import xllamacpp

    result = {
        "config": cfg,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python "
                   f"{platform.python_version()}, xllamacpp {getattr(xllamacpp, '__version__', '?')}",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": time.perf_counter() - begun,
        "phases": phases,
    }
    result["summary"] = summarise(phases)
    args.out.mkdir(parents=True, exist_ok=True)
    for ph in phases:
        for sample in ph["samples"]:
            sample.pop("answer", None)
    (args.out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result["summary"], args.out / "prefix-routing.png")
    report(result, args.out / "README.md")
    print((args.out / "README.md").read_text())
    for server in servers:
        del server


if __name__ == "__main__":
    main()
