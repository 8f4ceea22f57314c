#!/usr/bin/env python
"""Shoal vs. the same model driven directly through xllamacpp, in one run.

Two processes hold the model, each configured identically (parallel slots,
context per slot, threads, Jinja chat template, prompt caching):

* direct: ``xllamacpp.Server`` in a worker subprocess (this file with
  ``--direct-worker``), driven by ``handle_chat_completions`` with streaming on
  one thread per concurrent stream; first-token time is taken in the callback.
* shoal: ``shoal serve`` as a subprocess, driven over 127.0.0.1 with the
  official ``openai`` client (streaming, ``include_usage``), one thread per
  stream; first-token time is taken client-side, so it includes HTTP/SSE.

The two never generate at the same time: every test runs on one side, then the
other, alternating the order each round (ABBA), and the idle side's CPU time is
recorded to show it really was idle.  Reported numbers are medians over all
samples of all rounds, and ratios of medians.

Writes ``docs/benchmarks/local.json`` (raw samples, medians, machine info),
``local.md`` (table, PASS/FAIL lines, how to rerun) and ``local.png``.

Run from the repository root::

    /work/venv/bin/python benchmarks/bench_local.py            # full run (~6-8 min on 2 cores)
    /work/venv/bin/python benchmarks/bench_local.py --quick    # smoke run (~1-2 min)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "benchmarks"
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"

# Targets (reported as PASS/FAIL lines).
TARGET_TPS_RATIO = 0.95      # Shoal tokens/s >= 95 % of direct
TARGET_TTFT_DELTA_MS = 10.0  # Shoal adds <= 10 ms to time to first token

# --------------------------------------------------------------------------- prompts

GEN_PROMPTS = [
    "Write a long, complete Python module implementing an in-memory key-value database with transactions, "
    "secondary indexes, snapshots, a write-ahead log and a command-line interface. Include docstrings, type hints "
    "and unit tests. Output only the code.",
    "Write a long, complete Python module implementing an asyncio HTTP/1.1 server with routing, middleware, "
    "static file serving, chunked responses and graceful shutdown. Include docstrings, type hints and unit tests. "
    "Output only the code.",
    "Write a long, complete Python module implementing a Markdown-to-HTML converter that supports headings, nested "
    "lists, tables, fenced code blocks, emphasis and links. Include docstrings, type hints and unit tests. "
    "Output only the code.",
    "Write a long, complete Python module implementing a job scheduler with cron expressions, retries with "
    "exponential backoff, priorities and persistence to SQLite. Include docstrings, type hints and unit tests. "
    "Output only the code.",
]

SHORT_PROMPT = "Say hello in one short sentence. (ref {nonce})"

_RULES = [
    "Every public function, class and module carries a docstring that states what it does, its arguments, its "
    "return value and the exceptions it raises, written in the imperative mood.",
    "Type hints are mandatory on every function signature, including return types; prefer built-in generics such as "
    "list[str] and dict[str, int] over the typing aliases, and use the union operator for optional values.",
    "Names are descriptive: functions are verbs in snake_case, classes are nouns in CapWords, constants are "
    "UPPER_CASE, and single-letter names are reserved for loop indices and mathematical formulas.",
    "Functions stay short and do one thing; when a function grows beyond forty lines or three levels of nesting, "
    "split it into helpers with clear names and test each of them on its own.",
    "Errors are never silenced: catch the narrowest exception that you can actually handle, add context when "
    "re-raising with 'raise ... from exc', and never use a bare except clause anywhere in the code base.",
    "Resources such as files, sockets, locks and database connections are always managed with context managers so "
    "that they are released on every path, including the paths taken when an exception is raised.",
    "Logging goes through the logging module with a module-level logger; never print diagnostics, never log secrets, "
    "and use lazy %-style arguments so that messages below the active level cost nothing to produce.",
    "Configuration comes from explicit parameters or a settings object passed in by the caller; modules do not read "
    "environment variables at import time and never mutate global state as a side effect of being imported.",
    "Tests use pytest, live next to the code they exercise under a tests directory, cover both the happy path and "
    "the failure modes, and avoid sleeping: time is injected through a clock parameter that tests can control.",
    "Public interfaces are small and stable: prefix internal helpers with an underscore, list exported names in "
    "__all__, and keep backwards compatibility or document the break in the changelog with a migration note.",
    "Data structures are immutable where practical: prefer frozen dataclasses and tuples for values that cross "
    "module boundaries, and copy mutable arguments before storing them so callers cannot change internal state.",
    "Concurrency is explicit: shared mutable state is protected by a lock owned by the object that holds the state, "
    "threads are named, and asyncio code never calls blocking functions on the event loop thread.",
    "Input from users, files and the network is validated at the boundary with clear error messages that say what "
    "was expected, what was received and how to fix it, and internal code then trusts the validated values.",
    "When in doubt, choose the simplest design that works, write it down in a short design note, and revisit it "
    "only when a real requirement, backed by data from production, shows that the simple design is not enough.",
]
LONG_SYSTEM_PROMPT = (
    "You are a senior Python reviewer for a large engineering organisation. Apply the following numbered house "
    "rules strictly when you answer questions about code, and cite rule numbers when relevant.\n\n"
    + "\n".join(f"Rule {i}. {rule}" for i, rule in enumerate(_RULES, 1))
    + "\n\nAnswer briefly and precisely."
)
CACHE_USER_PROMPT = "In one sentence, what is rule 7 about?"


# --------------------------------------------------------------------------- small helpers

def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _quantile(xs: list[float], q: float) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version
        xv = version("xllamacpp")
    except Exception:  # noqa: BLE001
        xv = "unknown"
    try:
        from importlib.metadata import version
        ov = version("openai")
    except Exception:  # noqa: BLE001
        ov = "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except Exception:  # noqa: BLE001
        commit, dirty = "unknown", None
    import psutil
    return {
        "cpu_model": cpu,
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_total_mib": round(psutil.virtual_memory().total / 2**20),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "xllamacpp_version": xv,
        "openai_client_version": ov,
        "shoal_git_commit": commit,
        "shoal_git_dirty": dirty,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _body(messages: list[dict[str, str]], max_tokens: int, seed: int) -> dict[str, Any]:
    """The llama.cpp body; the same fields Shoal's ``to_llama_body`` sends for these requests."""
    return {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
        "temperature": 0.0,
        "seed": seed,
        "max_tokens": max_tokens,
    }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- direct worker (subprocess mode)

def direct_worker(args: argparse.Namespace) -> int:
    """Load ``xllamacpp.Server`` like Shoal's LocalBackend does, then serve batches over stdin/stdout."""
    # Keep a private copy of stdout for the protocol; send fd 1 (llama.cpp may print there) to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(args.model)
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx_per_slot * args.parallel
    params.use_jinja = True
    params.cache_prompt = True
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.cpuparams.poll = 0  # as Shoal's LocalBackend.load()
    params.model_alias = {"direct"}
    started = time.perf_counter()
    server = xllamacpp.Server(params)
    load_s = time.perf_counter() - started

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    send({"ready": True, "load_s": load_s, "pid": os.getpid()})

    def one(body: dict[str, Any], deadline: float, out: dict[str, Any]) -> None:
        state: dict[str, Any] = {"text": [], "t_first": None, "t_last": None, "usage": None, "finish": None,
                                 "timed_out": False}
        t_send = time.perf_counter()

        def on_chunk(chunk: Any) -> bool:
            now = time.perf_counter()
            state["t_last"] = now
            if isinstance(chunk, dict):
                if chunk.get("usage"):
                    state["usage"] = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if state["t_first"] is None:
                            state["t_first"] = now
                        state["text"].append(content)
                    if choice.get("finish_reason"):
                        state["finish"] = choice["finish_reason"]
            if now > deadline:
                state["timed_out"] = True
                return True  # stop generation, free the slot
            return False

        error = None
        try:
            result = server.handle_chat_completions(body, on_chunk)  # noqa: F821 (bound above; deleted only at exit)
            if isinstance(result, dict) and "error" in result:
                error = str(result["error"])
        except BaseException as exc:  # noqa: BLE001
            error = repr(exc)
        t_end = time.perf_counter()
        usage = state["usage"] or {}
        details = usage.get("prompt_tokens_details") or {}
        out.update({
            "t_send": t_send,
            "t_first": state["t_first"],
            "t_last": state["t_last"] or t_end,
            "t_end": t_end,
            "completion_tokens": usage.get("completion_tokens"),
            "prompt_tokens": usage.get("prompt_tokens"),
            "cached_tokens": details.get("cached_tokens"),
            "finish_reason": state["finish"],
            "sha": _sha("".join(state["text"])),
            "error": error or ("timeout" if state["timed_out"] else None),
        })

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        bodies = cmd["bodies"]
        timeout = float(cmd.get("timeout", 120))
        t0 = time.perf_counter()
        deadline = t0 + timeout
        outs: list[dict[str, Any]] = [{} for _ in bodies]
        threads = [threading.Thread(target=one, args=(b, deadline, o), name=f"direct-{i}", daemon=True)
                   for i, (b, o) in enumerate(zip(bodies, outs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.1, deadline + 10 - time.perf_counter()))
        results = [_relative(o, t0) if o else {"error": "thread did not finish"} for o in outs]
        send({"id": cmd.get("id"), "results": results})
    del server
    return 0


def _relative(o: dict[str, Any], t0: float) -> dict[str, Any]:
    """Times relative to the batch start, and per-request TTFT / decode rate."""
    r = dict(o)
    for k in ("t_send", "t_first", "t_last", "t_end"):
        if r.get(k) is not None:
            r[k] = r[k] - t0
    ttft = (r["t_first"] - r["t_send"]) if r.get("t_first") is not None else None
    r["ttft"] = ttft
    ct = r.get("completion_tokens")
    if r.get("t_first") is not None and ct and ct > 1 and r["t_last"] > r["t_first"]:
        r["decode_tps"] = (ct - 1) / (r["t_last"] - r["t_first"])
    else:
        r["decode_tps"] = None
    return r


# --------------------------------------------------------------------------- drivers (orchestrator side)

class DirectSide:
    """The direct xllamacpp worker subprocess."""

    name = "direct"

    def __init__(self, model: Path, settings: dict[str, int], log_path: Path) -> None:
        self.model = model
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._next = 0
        self.load_s: float | None = None
        self.startup_s: float | None = None

    def start(self, timeout: float) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--direct-worker", "--model", str(self.model),
               "--parallel", str(self.settings["parallel"]), "--ctx-per-slot", str(self.settings["ctx_per_slot"]),
               "--threads", str(self.settings["threads"])]
        started = time.perf_counter()
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, bufsize=1)
        threading.Thread(target=self._reader, name="direct-reader", daemon=True).start()
        msg = self._read(timeout)
        if not msg.get("ready"):
            raise RuntimeError(f"direct worker did not start: {msg}")
        self.load_s = float(msg["load_s"])
        self.startup_s = time.perf_counter() - started

    def _reader(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read(self, timeout: float) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"direct worker gave no answer within {timeout:.0f} s (log: {self.log_path})")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"direct worker exited (code {self.proc.poll() if self.proc else '?'}); "
                                   f"log tail:\n{_tail(self.log_path)}")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def run_batch(self, bodies: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        assert self.proc is not None and self.proc.stdin is not None
        self._next += 1
        self.proc.stdin.write(json.dumps({"op": "batch", "id": self._next, "bodies": bodies,
                                          "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        msg = self._read(timeout + 30)
        return list(msg["results"])

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                    proc.stdin.flush()
                    proc.stdin.close()
                except (BrokenPipeError, OSError, ValueError):
                    pass
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            _terminate(proc)
            self._log.close()


class ShoalSide:
    """``shoal serve`` as a subprocess, driven with the official ``openai`` client."""

    name = "shoal"

    def __init__(self, model: Path, settings: dict[str, int], log_path: Path, data_dir: Path) -> None:
        self.model = model
        self.settings = settings
        self.log_path = log_path
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.model_id: str | None = None
        self.client: Any = None
        self.startup_s: float | None = None
        self.command: list[str] = []

    def start(self, timeout: float) -> None:
        exe = Path(sys.executable).with_name("shoal")
        base = [str(exe)] if exe.exists() else [sys.executable, "-m", "shoal.cli"]
        self.command = base + [
            "serve", "--model", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
            "--parallel", str(self.settings["parallel"]), "--ctx-per-slot", str(self.settings["ctx_per_slot"]),
            "--threads", str(self.settings["threads"]), "--data-dir", str(self.data_dir), "--log-level", "warning",
        ]
        env = {k: v for k, v in os.environ.items()
               if k not in ("SHOAL_API_KEYS", "SHOAL_DATABASE_URL", "SHOAL_HOME")}
        started = time.perf_counter()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, cwd=str(self.data_dir))
        url = f"http://127.0.0.1:{self.port}"
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"shoal serve exited with code {self.proc.returncode}; log tail:\n"
                                   f"{_tail(self.log_path)}")
            if time.monotonic() > end:
                raise TimeoutError(f"shoal serve not healthy within {timeout:.0f} s (log: {self.log_path})")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    health = json.loads(resp.read())
                if health.get("status") == "ok":
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        self.startup_s = time.perf_counter() - started
        with urllib.request.urlopen(url + "/v1/models", timeout=10) as resp:
            models = json.loads(resp.read())
        self.model_id = models["data"][0]["id"]
        from openai import OpenAI
        self.client = OpenAI(base_url=url + "/v1", api_key="bench-no-auth", max_retries=0, timeout=120)

    def _one(self, body: dict[str, Any], deadline: float, out: dict[str, Any]) -> None:
        text: list[str] = []
        t_first = t_last = None
        usage = None
        finish = None
        error = None
        timed_out = False
        t_send = time.perf_counter()
        try:
            stream = self.client.chat.completions.create(
                model=self.model_id, messages=body["messages"], stream=True,
                stream_options={"include_usage": True}, temperature=body["temperature"], seed=body["seed"],
                max_tokens=body["max_tokens"], timeout=max(1.0, deadline - t_send),
            )
            try:
                for chunk in stream:
                    now = time.perf_counter()
                    t_last = now
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices or ():
                        if choice.delta is not None and choice.delta.content:
                            if t_first is None:
                                t_first = now
                            text.append(choice.delta.content)
                        if choice.finish_reason:
                            finish = choice.finish_reason
                    if now > deadline:
                        timed_out = True
                        break
            finally:
                stream.close()
        except Exception as exc:  # noqa: BLE001
            error = repr(exc)
        t_end = time.perf_counter()
        details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
        out.update({
            "t_send": t_send,
            "t_first": t_first,
            "t_last": t_last or t_end,
            "t_end": t_end,
            "completion_tokens": usage.completion_tokens if usage is not None else None,
            "prompt_tokens": usage.prompt_tokens if usage is not None else None,
            "cached_tokens": getattr(details, "cached_tokens", None) if details is not None else None,
            "finish_reason": finish,
            "sha": _sha("".join(text)),
            "error": error or ("timeout" if timed_out else None),
        })

    def run_batch(self, bodies: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        deadline = t0 + timeout
        outs: list[dict[str, Any]] = [{} for _ in bodies]
        threads = [threading.Thread(target=self._one, args=(b, deadline, o), name=f"shoal-{i}", daemon=True)
                   for i, (b, o) in enumerate(zip(bodies, outs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.1, deadline + 10 - time.perf_counter()))
        return [_relative(o, t0) if o else {"error": "thread did not finish"} for o in outs]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
        if self.proc is not None:
            _terminate(self.proc)
            self._log.close()


def _terminate(proc: subprocess.Popen[Any]) -> None:
    """Stop one child by its PID: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    except ProcessLookupError:
        pass


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class RssSampler(threading.Thread):
    """Samples the RSS of each process tree (process + all children) every 0.1 s; keeps the peak."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self._procs: dict[str, Any] = {}
        self.peak: dict[str, int] = {}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.samples: dict[str, int] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def track(self, name: str, pid: int) -> None:
        import psutil
        with self._lock:
            self._procs[name] = psutil.Process(pid)

    @staticmethod
    def tree_rss(proc: Any) -> int:
        import psutil
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    @staticmethod
    def tree_cpu(pid: int | None) -> float:
        """User+system CPU seconds of a process tree (0 if gone)."""
        import psutil
        if pid is None:
            return 0.0
        try:
            proc = psutil.Process(pid)
            total = 0.0
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def run(self) -> None:
        import psutil
        while not self._halt.is_set():
            with self._lock:
                items = list(self._procs.items())
            for name, proc in items:
                try:
                    rss = self.tree_rss(proc)
                except psutil.NoSuchProcess:
                    continue
                if rss <= 0:
                    continue
                self.first.setdefault(name, rss)
                self.last[name] = rss
                self.peak[name] = max(self.peak.get(name, 0), rss)
                self.samples[name] = self.samples.get(name, 0) + 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


# --------------------------------------------------------------------------- tests

class Runner:
    """Runs each test on one side at a time and records raw samples."""

    def __init__(self, cfg: argparse.Namespace, sides: dict[str, Any], run_tag: str) -> None:
        self.cfg = cfg
        self.sides = sides
        self.run_tag = run_tag
        self.idle_cpu_s: dict[str, float] = {"direct": 0.0, "shoal": 0.0}
        self.quiesce_wait_s = 0.0

    def quiesce(self, limit: float = 30.0) -> float:
        """Wait (up to ``limit`` s) until both processes are idle, e.g. after a timed-out stream; returns the wait."""
        pids = [self.sides[s].pid for s in ("direct", "shoal")]
        start = time.monotonic()
        while True:
            before = sum(RssSampler.tree_cpu(pid) for pid in pids)
            time.sleep(0.2)
            busy = sum(RssSampler.tree_cpu(pid) for pid in pids) - before
            if busy < 0.03 or time.monotonic() - start > limit:  # < 15 % of one core
                break
        waited = time.monotonic() - start
        self.quiesce_wait_s += waited
        return waited

    def _batch(self, side: str, bodies: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        other = "shoal" if side == "direct" else "direct"
        other_pid = self.sides[other].pid
        before = RssSampler.tree_cpu(other_pid)
        results = self.sides[side].run_batch(bodies, timeout)
        self.idle_cpu_s[other] += max(0.0, RssSampler.tree_cpu(other_pid) - before)
        return results

    def gen(self, side: str, streams: int) -> dict[str, Any]:
        c = self.cfg
        bodies = [_body([{"role": "user", "content": GEN_PROMPTS[i % len(GEN_PROMPTS)]}], c.max_tokens, c.seed)
                  for i in range(streams)]
        results = self._batch(side, bodies, c.gen_timeout)
        ok = [r for r in results if not r.get("error") and r.get("completion_tokens")]
        wall = max((r["t_end"] for r in results if r.get("t_end") is not None), default=None)
        total = sum(r["completion_tokens"] for r in ok)
        return {
            "streams": streams,
            "wall_s": wall,
            "total_completion_tokens": total,
            "aggregate_tps": (total / wall) if (wall and len(ok) == streams) else None,
            "decode_tps_per_stream": [r.get("decode_tps") for r in results],
            "ttft_s": [r.get("ttft") for r in results],
            "completion_tokens": [r.get("completion_tokens") for r in results],
            "prompt_tokens": [r.get("prompt_tokens") for r in results],
            "finish_reasons": [r.get("finish_reason") for r in results],
            "text_sha": [r.get("sha") for r in results],
            "errors": [r.get("error") for r in results if r.get("error")],
        }

    def short_ttft_paired(self, rnd: int) -> dict[str, Any]:
        """Short-prompt TTFT in pairs: the same request on both sides back to back, alternating which goes first.

        Both processes are idle before each request. A pair's difference is taken
        seconds apart, so the machine's drift (round medians of the direct side
        alone moved by 40 ms) cancels out of it.
        """
        c = self.cfg
        out: dict[str, Any] = {side: {"ttft_s": [], "prompt_tokens": [], "cached_tokens": [], "errors": []}
                               for side in ("direct", "shoal")}
        pairs: list[float] = []
        test_end = time.monotonic() + c.short_test_timeout
        for i in range(c.short_repeats):
            if pairs and time.monotonic() > test_end:
                out["shoal"]["errors"].append(f"test time limit: {len(pairs)} of {c.short_repeats} pairs done")
                break
            nonce = f"{self.run_tag}-r{rnd}-s{i}"
            body = _body([{"role": "user", "content": SHORT_PROMPT.format(nonce=nonce)}], c.ttft_max_tokens, c.seed)
            got: dict[str, float] = {}
            for side in (("direct", "shoal") if (i + rnd) % 2 == 0 else ("shoal", "direct")):
                self.quiesce()
                (r,) = self._batch(side, [body], c.ttft_timeout)
                if r.get("error") or r.get("ttft") is None:
                    out[side]["errors"].append(r.get("error") or "no content token")
                    continue
                got[side] = r["ttft"]
                out[side]["ttft_s"].append(r["ttft"])
                out[side]["prompt_tokens"].append(r.get("prompt_tokens"))
                out[side]["cached_tokens"].append(r.get("cached_tokens"))
            if len(got) == 2:
                pairs.append(got["shoal"] - got["direct"])
        out["pairs_s"] = pairs
        return out

    def cache_ttft(self, side: str, rnd: int) -> dict[str, Any]:
        """Cold: a fresh nonce at the start of the ~700-token system prompt; warm: the same prompt again."""
        c = self.cfg
        out: dict[str, Any] = {"cold_ttft_s": [], "warm_ttft_s": [], "cold_prompt_tokens": [],
                               "cold_cached_tokens": [], "warm_cached_tokens": [], "errors": []}
        test_end = time.monotonic() + c.cache_test_timeout
        for i in range(c.cold_repeats):
            if out["cold_ttft_s"] and time.monotonic() > test_end:
                out["errors"].append(f"test time limit: {i} of {c.cold_repeats} cold prompts done")
                break
            nonce = f"{self.run_tag}-r{rnd}-c{i}"
            messages = [{"role": "system", "content": f"Session {nonce}.\n{LONG_SYSTEM_PROMPT}"},
                        {"role": "user", "content": CACHE_USER_PROMPT}]
            body = _body(messages, c.ttft_max_tokens, c.seed)
            for j in range(1 + c.warm_repeats):
                if j > 1 and time.monotonic() > test_end:
                    break
                (r,) = self._batch(side, [body], c.ttft_timeout)
                if r.get("error") or r.get("ttft") is None:
                    out["errors"].append(r.get("error") or "no content token")
                    continue
                if j == 0:
                    out["cold_ttft_s"].append(r["ttft"])
                    out["cold_prompt_tokens"].append(r.get("prompt_tokens"))
                    out["cold_cached_tokens"].append(r.get("cached_tokens"))
                else:
                    out["warm_ttft_s"].append(r["ttft"])
                    out["warm_cached_tokens"].append(r.get("cached_tokens"))
        return out

    def warmup(self, side: str) -> None:
        """One short request, then the generation prompts once (4 tokens each), unrecorded."""
        c = self.cfg
        body = _body([{"role": "user", "content": SHORT_PROMPT.format(nonce=f"{self.run_tag}-warmup")}], 4, c.seed)
        self._batch(side, [body], c.ttft_timeout)
        bodies = [_body([{"role": "user", "content": GEN_PROMPTS[i % len(GEN_PROMPTS)]}], 4, c.seed)
                  for i in range(c.parallel)]
        self._batch(side, bodies, c.gen_timeout)


TESTS: list[tuple[str, Callable[[Runner, str, int], dict[str, Any]]]] = [
    ("gen_single", lambda r, side, rnd: r.gen(side, 1)),
    ("gen_concurrent", lambda r, side, rnd: r.gen(side, r.cfg.parallel)),
    ("ttft_short", lambda r, side, rnd: r.short_ttft_paired(rnd)),
    ("ttft_cache", lambda r, side, rnd: r.cache_ttft(side, rnd)),
]


PAIRED_TESTS = {"ttft_short"}
"""Tests that run both sides themselves, alternating request by request."""


# --------------------------------------------------------------------------- summary

def _collect(rounds: list[dict[str, Any]], side: str, test: str, key: str, flat: bool = True) -> list[float]:
    vals: list[float] = []
    for rd in rounds:
        res = rd.get(side, {}).get(test)
        if not res:
            continue
        v = res.get(key)
        if isinstance(v, list):
            vals.extend(x for x in v if x is not None)
        elif v is not None:
            vals.append(v)
    return vals


METRICS = [
    # key, label, unit, test, field, scale, higher_is_better
    ("tps_single", "Generation tok/s, 1 stream (tokens / wall incl. TTFT)", "tok/s", "gen_single", "aggregate_tps",
     1.0, True),
    ("decode_single", "Decode tok/s, 1 stream (excl. TTFT)", "tok/s", "gen_single", "decode_tps_per_stream",
     1.0, True),
    ("tps_concurrent", "Generation tok/s, {p} streams aggregate (total tokens / wall)", "tok/s", "gen_concurrent",
     "aggregate_tps", 1.0, True),
    ("decode_concurrent", "Decode tok/s per stream, {p} streams (excl. TTFT)", "tok/s", "gen_concurrent",
     "decode_tps_per_stream", 1.0, True),
    ("ttft_short", "TTFT, short prompt, 1 stream", "ms", "ttft_short", "ttft_s", 1000.0, False),
    ("ttft_cold", "TTFT, ~{sp}-token prefix, cold (cache miss)", "ms", "ttft_cache", "cold_ttft_s", 1000.0, False),
    ("ttft_warm", "TTFT, same prompt repeated, warm (cache hit)", "ms", "ttft_cache", "warm_ttft_s", 1000.0, False),
]


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _label, unit, test, fld, scale, higher in METRICS:
        entry: dict[str, Any] = {"unit": unit, "higher_is_better": higher}
        for side in ("direct", "shoal"):
            xs = [x * scale for x in _collect(rounds, side, test, fld)]
            entry[side] = {"median": _median(xs), "p25": _quantile(xs, 0.25), "p75": _quantile(xs, 0.75),
                           "min": min(xs) if xs else None, "max": max(xs) if xs else None, "n": len(xs)}
        d, s = entry["direct"]["median"], entry["shoal"]["median"]
        entry["ratio_shoal_over_direct"] = (s / d) if (d and s is not None) else None
        entry["delta_shoal_minus_direct"] = (s - d) if (d is not None and s is not None) else None
        if unit == "ms":
            # Paired per-round difference of medians (same round, adjacent in time).
            diffs = []
            for rd in rounds:
                a = rd.get("direct", {}).get(test, {}).get(fld) or []
                b = rd.get("shoal", {}).get(test, {}).get(fld) or []
                if a and b:
                    diffs.append((statistics.median(b) - statistics.median(a)) * scale)
            entry["paired_round_delta_median"] = _median(diffs)
            if test in PAIRED_TESTS:
                pairs = [x * scale for rd in rounds for x in rd.get(test + "_pairs_s", ())]
                entry["paired_sample_delta"] = {"median": _median(pairs), "p25": _quantile(pairs, 0.25),
                                                "p75": _quantile(pairs, 0.75), "n": len(pairs)}
        out[key] = entry
    return out


def _token_report(rounds: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
    rep: dict[str, Any] = {}
    for side in ("direct", "shoal"):
        counts: list[int] = []
        reasons: list[str] = []
        for test in ("gen_single", "gen_concurrent"):
            counts += _collect(rounds, side, test, "completion_tokens")
            reasons += [x for x in _collect(rounds, side, test, "finish_reasons") if x]
        rep[side] = {"streams": len(counts), "min": min(counts) if counts else None,
                     "max": max(counts) if counts else None,
                     "reached_max_tokens": sum(1 for c in counts if c == max_tokens),
                     "finish_reasons": {r: reasons.count(r) for r in sorted(set(reasons))}}
    # Same text on both sides for the single stream (greedy decoding, fixed seed)?
    d = {x for x in _collect(rounds, "direct", "gen_single", "text_sha")}
    s = {x for x in _collect(rounds, "shoal", "gen_single", "text_sha")}
    rep["single_stream_text_identical"] = bool(d) and d == s
    rep["single_stream_text_hashes"] = {"direct": sorted(d), "shoal": sorted(s)}
    return rep


def _cache_report(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rep = {}
    for side in ("direct", "shoal"):
        rep[side] = {k: (round(v) if v is not None else None) for k, v in {
            "prompt_tokens_median": _median(_collect(rounds, side, "ttft_cache", "cold_prompt_tokens")),
            "cold_cached_tokens_median": _median(_collect(rounds, side, "ttft_cache", "cold_cached_tokens")),
            "warm_cached_tokens_median": _median(_collect(rounds, side, "ttft_cache", "warm_cached_tokens")),
            "short_prompt_tokens_median": _median(_collect(rounds, side, "ttft_short", "prompt_tokens")),
        }.items()}
    return rep


def targets(summary: dict[str, Any], parallel: int) -> list[dict[str, Any]]:
    out = []
    for key, what in (("tps_single", "1 stream"), ("tps_concurrent", f"{parallel} concurrent streams")):
        r = summary[key]["ratio_shoal_over_direct"]
        out.append({"name": f"tokens/s {what}", "key": key, "value": r, "target": f">= {TARGET_TPS_RATIO:.0%} of direct",
                    "pass": (r is not None and r >= TARGET_TPS_RATIO),
                    "text": f"Shoal tokens/s ({what}) >= {TARGET_TPS_RATIO:.0%} of direct: "
                            + (f"{r:.1%}" if r is not None else "n/a")})
    d = summary["ttft_short"]["paired_sample_delta"]["median"]
    out.append({"name": "TTFT overhead", "key": "ttft_short", "value": d,
                "target": f"<= {TARGET_TTFT_DELTA_MS:.0f} ms added (median of paired short-prompt TTFT differences)",
                "pass": (d is not None and d <= TARGET_TTFT_DELTA_MS),
                "text": f"Shoal adds <= {TARGET_TTFT_DELTA_MS:.0f} ms to TTFT (short prompt, median of "
                        f"{summary['ttft_short']['paired_sample_delta']['n']} paired differences): "
                        + (f"{d:+.1f} ms" if d is not None else "n/a")})
    return out


# --------------------------------------------------------------------------- outputs

def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "ms":
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"
    return f"{v:.1f}"


def _shown_command(cmd: list[str]) -> str:
    """The ``shoal serve`` command line with this run's ephemeral port and temp dir replaced by placeholders."""
    shown = [Path(cmd[0]).name] if cmd else []
    for prev, arg in zip(cmd, cmd[1:]):
        shown.append({"--port": "<free-port>", "--data-dir": "<temp-dir>", "--model": "<model.gguf>"}.get(prev, arg))
    return " ".join(shown)


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    meta, summ = result["meta"], result["summary"]
    s = meta["settings"]
    cache = result["cache"]
    sp = cache["direct"]["prompt_tokens_median"] or cache["shoal"]["prompt_tokens_median"]
    lines = [
        "# Local backend benchmark: Shoal vs. xllamacpp direct",
        "",
        f"Model `{meta['model_file']}`; {meta['machine']['cpu_model']}, {meta['machine']['cores_logical']} cores; "
        f"Python {meta['machine']['python']}, xllamacpp {meta['machine']['xllamacpp_version']}; "
        f"{meta['machine']['date']}; Shoal commit {meta['machine']['shoal_git_commit']}"
        + (" (dirty tree)" if meta["machine"].get("shoal_git_dirty") else "") + ".",
        "",
        f"{'**Quick smoke run** — too few samples for conclusions. ' if meta['quick'] else ''}"
        f"{meta['rounds_completed']} interleaved round(s)"
        + (f" + {meta['rounds_partial']} partial" if meta.get("rounds_partial") else "")
        + f" (order alternates ABBA; the two systems never generate at "
        f"the same time); {s['parallel']} parallel slots, {s['ctx_per_slot']} ctx/slot, {s['threads']} threads, "
        f"temperature 0, seed {s['seed']}, max_tokens {s['max_tokens']} for generation tests "
        f"({s['ttft_max_tokens']} for TTFT tests). Values are medians over all samples of all rounds; "
        f"ratio = Shoal / direct.",
        "",
        "| Metric | Direct (xllamacpp) | Shoal | Shoal / direct | Shoal − direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label, unit, *_ in METRICS:
        e = summ[key]
        lab = label.format(p=s["parallel"], sp=int(sp) if sp else 700)
        ratio = e["ratio_shoal_over_direct"]
        delta = e["delta_shoal_minus_direct"]
        lines.append(
            f"| {lab} ({unit}) | {_fmt(e['direct']['median'], unit)} | {_fmt(e['shoal']['median'], unit)} | "
            f"{(f'{ratio:.3f}' if ratio is not None else 'n/a')} | "
            f"{(f'{delta:+.1f} {unit}' if delta is not None else 'n/a')} |")
    rss = result["rss"]
    def mib(v: int | None) -> str:
        return f"{v / 2**20:.0f}" if v else "n/a"
    d_pk, s_pk = rss["direct"]["peak_bytes"], rss["shoal"]["peak_bytes"]
    lines.append(f"| Peak RSS, process tree (MiB) | {mib(d_pk)} | {mib(s_pk)} | "
                 f"{(f'{s_pk / d_pk:.3f}' if d_pk and s_pk else 'n/a')} | "
                 f"{(f'{(s_pk - d_pk) / 2**20:+.0f} MiB' if d_pk and s_pk else 'n/a')} |")
    lines.append(f"| Startup until ready (s) | {meta['startup_s']['direct']:.1f} | {meta['startup_s']['shoal']:.1f} | "
                 f"| |")
    lines += ["", "## Targets", ""]
    for t in result["targets"]:
        lines.append(f"- **{'PASS' if t['pass'] else 'FAIL'}** — {t['text']}")
    tok = result["tokens"]
    lines += [
        "",
        "## Checks",
        "",
        f"- Completion tokens per generation stream: direct {tok['direct']['min']}–{tok['direct']['max']} "
        f"({tok['direct']['reached_max_tokens']}/{tok['direct']['streams']} reached max_tokens, finish "
        f"{tok['direct']['finish_reasons']}); Shoal {tok['shoal']['min']}–{tok['shoal']['max']} "
        f"({tok['shoal']['reached_max_tokens']}/{tok['shoal']['streams']}, finish {tok['shoal']['finish_reasons']}).",
        f"- Single-stream output identical on both sides (greedy, same seed): "
        f"{'yes' if tok['single_stream_text_identical'] else 'no'}.",
        f"- Prompt cache: cached-prefix prompt is {cache['direct']['prompt_tokens_median']} tokens (direct) / "
        f"{cache['shoal']['prompt_tokens_median']} (Shoal); cached tokens reported cold "
        f"{cache['direct']['cold_cached_tokens_median']} / {cache['shoal']['cold_cached_tokens_median']}, warm "
        f"{cache['direct']['warm_cached_tokens_median']} / {cache['shoal']['warm_cached_tokens_median']} "
        f"(direct / Shoal). Short prompt: {cache['direct']['short_prompt_tokens_median']} tokens.",
        f"- Short-prompt TTFT, paired request by request (Shoal − direct, {summ['ttft_short']['paired_sample_delta']['n']} "
        f"pairs): median {_fmt(summ['ttft_short']['paired_sample_delta']['median'], 'ms')} ms, quartiles "
        f"{_fmt(summ['ttft_short']['paired_sample_delta']['p25'], 'ms')} / "
        f"{_fmt(summ['ttft_short']['paired_sample_delta']['p75'], 'ms')} ms (the target's measure).",
        f"- TTFT paired per-round difference (median of per-round Shoal − direct medians): short "
        f"{_fmt(summ['ttft_short'].get('paired_round_delta_median'), 'ms')} ms, cold "
        f"{_fmt(summ['ttft_cold'].get('paired_round_delta_median'), 'ms')} ms, warm "
        f"{_fmt(summ['ttft_warm'].get('paired_round_delta_median'), 'ms')} ms.",
        f"- Idle side's CPU time while the other side ran: direct {meta['idle_cpu_s']['direct']:.2f} s, "
        f"Shoal {meta['idle_cpu_s']['shoal']:.2f} s (should be ~0: the systems did not overlap; before every test "
        f"the bench waits until both processes are idle — {meta.get('quiesce_wait_s', 0):.0f} s in total).",
        f"- Load average (1/5/15 min) at start {meta['loadavg_start']}, at end {meta['loadavg_end']}; "
        f"run took {meta['duration_s']:.0f} s{' (stopped early: ' + meta['stopped_early'] + ')' if meta['stopped_early'] else ''}.",
        "",
        "## Method",
        "",
        "- **Direct**: `xllamacpp.Server` configured exactly like Shoal's `LocalBackend.load()` (n_parallel, "
        "n_ctx = ctx_per_slot × parallel, use_jinja, cache_prompt, threads for decode and batch, decode threads not polling), in its own worker "
        "subprocess; `handle_chat_completions(body, callback)` with `stream=True` and "
        "`stream_options.include_usage`, one thread per stream; TTFT is the callback time of the first "
        "non-empty content delta, token counts come from the final usage chunk.",
        f"- **Shoal**: `{_shown_command(meta['shoal_command'])}`, "
        "driven with the official `openai` client over 127.0.0.1 (streaming, `include_usage`), one thread per "
        "stream; TTFT is measured client-side (first non-empty content delta), so it includes HTTP, SSE and the "
        "client's parsing — the overhead this benchmark is meant to show. The client runs on the same 2 cores.",
        "- Generation prompts ask for a long Python module, so every stream runs to max_tokens; the single stream "
        "uses prompt 1, the concurrent batch prompts 1–4. Aggregate tok/s = total completion tokens / wall time of "
        "the batch (includes TTFT); decode tok/s = (completion tokens − 1) / (last − first token time).",
        "- Short TTFT: a one-line user prompt with a nonce at the end (the chat-template prefix is cached, the "
        f"rest is new), {s['short_repeats']} pairs per round: the same request on both sides back to back, "
        "alternating which side goes first, both processes idle before each request; the target is the median "
        "of the pairs' differences, which cancels the machine's drift between rounds. Cache: a ~700-token system prompt with a fresh "
        f"nonce at its *start* (cold: nothing to reuse), then the identical request again {s['warm_repeats']}× "
        f"(warm); {s['cold_repeats']} cold prompt(s) per round.",
        "- Peak RSS: psutil, every 0.1 s, process plus children, for the direct worker and the `shoal serve` "
        "process. Both map the same GGUF file, so its pages are counted in both RSS values.",
        "",
        "## Rerun",
        "",
        "```sh",
        f"cd {REPO}",
        "/work/venv/bin/python benchmarks/bench_local.py            # full run; writes docs/benchmarks/local.{json,md,png}",
        "/work/venv/bin/python benchmarks/bench_local.py --quick    # short smoke run",
        "```",
        "",
        f"This run: `{meta['command']}`. Options: `--model PATH` (another GGUF), `--rounds N`, `--max-tokens N`, "
        "`--budget SECONDS`, `--find-links DIR` (assemble the default model from local wheels), `--out-dir DIR`.",
        "",
        "![Shoal vs direct](local.png)",
        "",
    ]
    path.write_text("\n".join(lines))


def write_plot(path: Path, result: dict[str, Any]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = result["summary"]
    p = result["meta"]["settings"]["parallel"]
    colors = {"direct": "#4C72B0", "shoal": "#DD8452"}
    c = result["cache"]
    sp_raw = c["direct"]["prompt_tokens_median"] or c["shoal"]["prompt_tokens_median"]
    sp = f"{sp_raw:.0f}" if sp_raw else "~700"
    labels = {"direct": "direct (xllamacpp)", "shoal": "Shoal (HTTP, openai client)"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    panels = [
        (axes[0], [("tps_single", "1 stream"), ("tps_concurrent", f"{p} streams\n(aggregate)")],
         "tokens / s (higher is better)", "Generation throughput", False),
        (axes[1], [("ttft_short", "short prompt"), ("ttft_cold", f"{sp}-token prefix\ncold"),
                   ("ttft_warm", f"{sp}-token prefix\nwarm (cached)")],
         "ms (lower is better, log scale)", "Time to first token", True),
    ]
    width = 0.38
    for ax, groups, ylabel, title, log in panels:
        for i, side in enumerate(("direct", "shoal")):
            xs, hs, lo, hi = [], [], [], []
            for g, (key, _) in enumerate(groups):
                e = summ[key][side]
                if e["median"] is None:
                    continue
                xs.append(g + (i - 0.5) * width)
                hs.append(e["median"])
                lo.append(max(0.0, e["median"] - (e["p25"] or e["median"])))
                hi.append(max(0.0, (e["p75"] or e["median"]) - e["median"]))
            bars = ax.bar(xs, hs, width, color=colors[side], label=labels[side], yerr=[lo, hi], capsize=3)
            for b, h in zip(bars, hs):
                ax.annotate(f"{h:.0f}" if h >= 100 else f"{h:.1f}", (b.get_x() + b.get_width() / 2, h),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(groups)))
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_xticklabels([g[1] for g in groups])
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
            tops = [summ[k][side]["median"] for k, _ in groups for side in ("direct", "shoal")
                    if summ[k][side]["median"]]
            if tops:
                ax.set_ylim(min(tops) / 3, max(tops) * 2)
        else:
            ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
        ax.grid(axis="y", alpha=0.3)
    meta = result["meta"]
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.93), ncol=2, fontsize=9, frameon=False)
    fig.suptitle(f"Shoal vs direct xllamacpp — {meta['model_file']} — {meta['machine']['cores_logical']} cores, "
                 f"{meta['rounds_completed']} rounds{' (QUICK)' if meta['quick'] else ''}; medians, bars = IQR",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"GGUF path (default: the packaged {DEFAULT_MODEL})")
    p.add_argument("--quick", action="store_true", help="short smoke run (~1-2 min)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 8; --quick 2)")
    p.add_argument("--max-tokens", type=int, help="completion tokens per generation stream (default 128; --quick 64)")
    p.add_argument("--budget", type=float,
                   help="seconds for the measured rounds; no round starts that would overrun it "
                        "(default 390; --quick 75)")
    p.add_argument("--find-links", metavar="DIR",
                   help="assemble the default model from wheels in DIR (pip --no-index --find-links DIR)")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--parallel", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--ctx-per-slot", type=int, default=4096, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--direct-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.direct_worker:
        return args
    args.rounds = args.rounds or (2 if args.quick else 8)
    args.max_tokens = args.max_tokens or (64 if args.quick else 128)
    args.budget = args.budget if args.budget is not None else (75.0 if args.quick else 390.0)
    args.short_repeats = 16
    args.cold_repeats = 1 if args.quick else 2
    args.warm_repeats = 2
    args.ttft_max_tokens = 4
    # Time limits (none is reached on an idle machine): per generation batch, per TTFT request, per TTFT test.
    args.gen_timeout = 90.0 if args.quick else 150.0
    args.ttft_timeout = 30.0
    args.short_test_timeout = 40.0 if args.quick else 60.0
    args.cache_test_timeout = 60.0 if args.quick else 90.0
    args.startup_timeout = 240.0
    return args


def resolve_model(args: argparse.Namespace) -> Path:
    if args.model:
        path = Path(args.model).expanduser()
        if not path.is_file():
            raise SystemExit(f"bench: model file not found: {path}")
        return path.resolve()
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path
    kw: dict[str, Any] = {}
    if args.find_links:
        kw["pip_args"] = ["--no-index", "--find-links", str(args.find_links)]
    path, _ = resolve_model_path(DEFAULT_MODEL, default_cache_dir(), **kw)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.direct_worker:
        return direct_worker(args)

    t_start = time.monotonic()
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    _log(f"{'quick' if args.quick else 'full'} run: {args.rounds} rounds, max_tokens {args.max_tokens}, "
         f"budget {args.budget:.0f} s; load average {loadavg_start}")
    model = resolve_model(args)
    _log(f"model {model}")
    settings = {"parallel": args.parallel, "ctx_per_slot": args.ctx_per_slot, "threads": args.threads}
    run_tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    direct = DirectSide(model, settings, tmp / "direct.log")
    shoal = ShoalSide(model, settings, tmp / "shoal.log", tmp / "shoal-data")
    shoal.data_dir.mkdir()
    sampler = RssSampler()
    sampler.start()
    rounds: list[dict[str, Any]] = []
    stopped_early = ""
    ok = False
    try:
        _log("starting direct worker")
        direct.start(args.startup_timeout)
        sampler.track("direct", direct.pid)  # type: ignore[arg-type]
        _log(f"direct ready in {direct.startup_s:.1f} s (Server() {direct.load_s:.1f} s); starting shoal serve")
        shoal.start(args.startup_timeout)
        sampler.track("shoal", shoal.pid)  # type: ignore[arg-type]
        _log(f"shoal ready in {shoal.startup_s:.1f} s on port {shoal.port} (model id {shoal.model_id})")
        runner = Runner(args, {"direct": direct, "shoal": shoal}, run_tag)
        for side in ("direct", "shoal"):
            runner.quiesce()
            runner.warmup(side)
        runner.idle_cpu_s = {"direct": 0.0, "shoal": 0.0}
        runner.quiesce_wait_s = 0.0
        _log("warm-up done")
        t_rounds = time.monotonic()
        for rnd in range(args.rounds):
            elapsed = time.monotonic() - t_rounds
            if rounds and elapsed + elapsed / len(rounds) > args.budget:
                stopped_early = f"time budget of {args.budget:.0f} s reached after {len(rounds)} round(s)"
                _log(stopped_early)
                break
            order = ["direct", "shoal"] if rnd % 2 == 0 else ["shoal", "direct"]
            rd: dict[str, Any] = {"round": rnd + 1, "order": order, "direct": {}, "shoal": {}}
            t_r = time.monotonic()
            for test, fn in TESTS:
                if rounds and time.monotonic() - t_rounds > args.budget:
                    stopped_early = f"time budget of {args.budget:.0f} s reached during round {rnd + 1}"
                    break
                if test in PAIRED_TESTS:  # both sides inside the test, sample by sample
                    both = fn(runner, "", rnd)
                    rd["direct"][test], rd["shoal"][test] = both["direct"], both["shoal"]
                    rd[test + "_pairs_s"] = both["pairs_s"]
                    continue
                for side in order:
                    runner.quiesce()
                    rd[side][test] = fn(runner, side, rnd)
            rd["duration_s"] = time.monotonic() - t_r
            rd["complete"] = not stopped_early
            rounds.append(rd)
            if stopped_early:
                _log(stopped_early + "; keeping the tests of that round that ran on both sides")
                break
            g = {s: rd[s]["gen_single"]["aggregate_tps"] for s in ("direct", "shoal")}
            c = {s: rd[s]["gen_concurrent"]["aggregate_tps"] for s in ("direct", "shoal")}
            t = {s: _median(rd[s]["ttft_short"]["ttft_s"]) for s in ("direct", "shoal")}
            _log(f"round {rnd + 1}/{args.rounds} ({rd['duration_s']:.0f} s): tok/s 1-stream "
                 f"{_fmt(g['direct'], 'tok/s')} vs {_fmt(g['shoal'], 'tok/s')}, {args.parallel}-stream "
                 f"{_fmt(c['direct'], 'tok/s')} vs {_fmt(c['shoal'], 'tok/s')}, short TTFT "
                 f"{_fmt(t['direct'] and t['direct'] * 1000, 'ms')} vs {_fmt(t['shoal'] and t['shoal'] * 1000, 'ms')} ms"
                 " (direct vs shoal)")
        ok = bool(rounds)
    except KeyboardInterrupt:
        stopped_early = "interrupted"
        _log("interrupted; writing what was measured")
        ok = bool(rounds)
    except Exception as exc:  # noqa: BLE001
        stopped_early = f"error: {exc}"
        _log(f"error: {exc}\n{traceback.format_exc()}")
        ok = bool(rounds)
    finally:
        _log("stopping processes")
        for stop in (sampler.stop, shoal.stop, direct.stop):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop the others regardless
                _log(f"while stopping: {exc!r}")

    if not ok:
        _log(f"no complete round; logs kept in {tmp}")
        return 1

    summary = summarize(rounds)
    rss = {s: {"peak_bytes": sampler.peak.get(s), "after_load_bytes": sampler.first.get(s),
               "last_bytes": sampler.last.get(s), "samples": sampler.samples.get(s, 0)} for s in ("direct", "shoal")}
    result = {
        "meta": {
            "command": " ".join(["python", "benchmarks/bench_local.py",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "quick": args.quick,
            "model_file": model.name,
            "model_path": str(model),
            "machine": _machine_info(),
            "settings": {**settings, "seed": args.seed, "temperature": 0.0, "max_tokens": args.max_tokens,
                         "ttft_max_tokens": args.ttft_max_tokens, "short_repeats": args.short_repeats,
                         "cold_repeats": args.cold_repeats, "warm_repeats": args.warm_repeats,
                         "rounds_requested": args.rounds, "budget_s": args.budget,
                         "gen_timeout_s": args.gen_timeout, "ttft_timeout_s": args.ttft_timeout,
                         "short_test_timeout_s": args.short_test_timeout,
                         "cache_test_timeout_s": args.cache_test_timeout},
            "shoal_command": shoal.command,
            "rounds_completed": sum(1 for rd in rounds if rd.get("complete")),
            "rounds_partial": sum(1 for rd in rounds if not rd.get("complete")),
            "stopped_early": stopped_early,
            "startup_s": {"direct": direct.startup_s, "shoal": shoal.startup_s},
            "direct_server_construct_s": direct.load_s,
            "idle_cpu_s": runner.idle_cpu_s,
            "quiesce_wait_s": runner.quiesce_wait_s,
            "loadavg_start": loadavg_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "duration_s": time.monotonic() - t_start,
            "prompts": {"generation": GEN_PROMPTS, "short": SHORT_PROMPT, "cache_system": LONG_SYSTEM_PROMPT,
                        "cache_user": CACHE_USER_PROMPT},
        },
        "summary": summary,
        "targets": targets(summary, args.parallel),
        "tokens": _token_report(rounds, args.max_tokens),
        "cache": _cache_report(rounds),
        "rss": rss,
        "rounds": rounds,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "local.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(args.out_dir / "local.md", result)
    try:
        write_plot(args.out_dir / "local.png", result)
    except Exception as exc:  # noqa: BLE001
        _log(f"plot failed: {exc}")
    shutil.rmtree(tmp, ignore_errors=True)

    # Console summary.
    print()
    for key, label, unit, *_ in METRICS:
        e = summary[key]
        r = e["ratio_shoal_over_direct"]
        lab = label.format(p=args.parallel, sp=result["cache"]["direct"]["prompt_tokens_median"] or 700)
        print(f"{lab:<62} direct {_fmt(e['direct']['median'], unit):>8} shoal {_fmt(e['shoal']['median'], unit):>8} "
              f"{unit:<5} ratio " + (f"{r:.3f}" if r is not None else "n/a"))
    print(f"{'Peak RSS (MiB)':<62} direct {(rss['direct']['peak_bytes'] or 0) / 2**20:>8.0f} "
          f"shoal {(rss['shoal']['peak_bytes'] or 0) / 2**20:>8.0f}")
    for t in result["targets"]:
        print(f"{'PASS' if t['pass'] else 'FAIL'}: {t['text']}")
    print(f"wrote {args.out_dir}/local.json, local.md, local.png in {result['meta']['duration_s']:.0f} s"
          + (f" ({stopped_early})" if stopped_early else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
