#!/usr/bin/env python
"""Gateway overhead: Shoal vs. the LiteLLM proxy vs. a minimal pass-through, against a very fast fake upstream.

One run: every gateway is up for the whole run and measured in interleaved rounds
(medians reported), since a shared machine's speed drifts. Each gateway is pinned to core 0 (``taskset -c 0``);
the fake upstream, ``wrk`` and this driver share core 1. Measured per gateway:

* non-streaming chat completions with ``wrk``: requests/s at concurrency 32, and
  p50/p99 at concurrency 1 (added latency = gateway minus the upstream alone);
* streaming: requests/s at concurrency 32 (``wrk``), and time to first ``data:``
  byte at concurrency 1 with a raw-socket client (wrk cannot see it);
* RSS of the gateway process tree, sampled every 0.2 s over a run of 10,000
  non-streaming requests at concurrency 32 (start, end, peak).

Shoal runs as ``shoal serve --config`` with auth on (a managed key made through the
admin API), metering on (usage rows in SQLite, counted after the run) and routing on
(a catalog model with an OpenAI-compatible deployment). LiteLLM runs from its own
virtualenv (never Shoal's): ``litellm --config`` with a ``model_list``, a master key,
one worker and no database.

Writes ``docs/benchmarks/gateway.json``, ``gateway.md`` and ``gateway.png``. Rerun::

    apt-get install -y wrk
    python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'
    /work/venv/bin/python benchmarks/bench_gateway.py [--litellm /tmp/litellm-venv/bin/litellm] [--duration 8]

Subcommands ``upstream`` and ``passthrough`` run the fake upstream and the floor proxy
(``gateway_servers.py``); ``gateway_report.py`` writes the outputs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
MODEL = "fast"
HOST = "127.0.0.1"
RSS_REQUESTS = 10_000
MIB = 1024 * 1024

# ---------------------------------------------------------------- driving


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Proc:
    """A process this run started (in its own session), stopped by its PID."""

    def __init__(self, cmd: list[str], core: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(["taskset", "-c", str(core), *cmd], stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.popen.pid, sig)  # the group led by the process we started
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def wait_ready(url: str, proc: Proc, timeout: float = 90.0) -> None:
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{url}: process exited; log tail:\n{proc.log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready within {timeout:.0f} s")


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def body(stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}],
                               "max_tokens": 16}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(payload, separators=(",", ":")).encode()


LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(auth)s
wrk.body = '%(body)s'
local n = 0
%(response)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"errors":%%d,"non2xx":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%.1f}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean))
end
"""


def wrk(url: str, token: str | None, *, stream: bool, conns: int, seconds: float, workdir: Path,
        limit: int | None = None) -> dict[str, Any]:
    """One wrk run (pinned to core 1); its summary with requests/s and latency percentiles in ms."""
    script = workdir / f"wrk-{stream}-{conns}-{limit}.lua"
    marker = script.with_suffix(".done")
    marker.unlink(missing_ok=True)
    # wrk sleeps for its whole duration even once every thread stopped itself, so the thread that
    # reaches the limit leaves a marker and the run is ended here (SIGINT: wrk still reports).
    response = (f"response = function(status, headers, body)\n  n = n + 1\n  if n == {limit} then "
                f"io.open('{marker}', 'w'):close() end\n  if n >= {limit} then wrk.thread:stop() end\nend"
                ) if limit else ""
    script.write_text(LUA % {"auth": f'wrk.headers["Authorization"] = "Bearer {token}"' if token else "",
                             "body": body(stream).decode(), "response": response})
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "10s", "--latency",
           "-s", str(script), f"{url}/v1/chat/completions"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + seconds + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if limit and marker.exists():
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out}")
    r = json.loads(line[8:])
    secs = r["duration_us"] / 1e6
    return {"conns": conns, "stream": stream, "requests": r["requests"], "seconds": round(secs, 2),
            "rps": round(r["requests"] / secs, 1), "errors": r["errors"], "non2xx": r["non2xx"],
            "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "mean_ms": round(r["mean_us"] / 1000, 3)}


def ttfb(port: int, token: str | None, n: int) -> dict[str, float]:
    """Time to the first ``data:`` byte of streamed completions, one at a time on a keep-alive connection."""
    payload = body(True)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
           f"Accept: text/event-stream\r\n{auth}Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    times: list[float] = []
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            started, first, buf = time.perf_counter(), None, b""
            sock.sendall(req)
            while not buf.endswith(b"0\r\n\r\n"):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("connection closed mid-stream")
                buf += data
                if first is None and b"data:" in buf:
                    first = time.perf_counter()
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"streaming request failed: {buf[:300]!r}")
            assert first is not None
            times.append((first - started) * 1000)
    times.sort()
    return {"n": n, "p50_ms": round(statistics.median(times), 3), "p99_ms": round(times[int(0.99 * (n - 1))], 3)}


def rss_run(url: str, token: str | None, pid: int, workdir: Path, cap_seconds: float) -> dict[str, Any]:
    """10,000 non-streaming requests at concurrency 32 while the gateway's RSS is sampled every 0.2 s."""
    import psutil

    root = psutil.Process(pid)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            try:
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            except psutil.Error:
                total = 0
            samples.append((round(time.perf_counter() - t0, 2), round(total / MIB, 1)))
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        run = wrk(url, token, stream=False, conns=32, seconds=cap_seconds, workdir=workdir, limit=RSS_REQUESTS)
    finally:
        stop.set()
        thread.join()
    mib = [m for _, m in samples if m]
    return {"requests": run["requests"], "seconds": run["seconds"], "errors": run["errors"] + run["non2xx"],
            "start_mib": mib[0], "end_mib": mib[-1], "peak_mib": max(mib), "samples": samples}


def measure_round(name: str, url: str, port: int, token: str | None, args: argparse.Namespace,
                  workdir: Path) -> dict[str, Any]:
    """One round of every latency and throughput measurement of one target."""
    d = args.duration
    return {"ns_c1": wrk(url, token, stream=False, conns=1, seconds=d, workdir=workdir),
            "ns_c32": wrk(url, token, stream=False, conns=32, seconds=d, workdir=workdir),
            "st_c32": wrk(url, token, stream=True, conns=32, seconds=d, workdir=workdir),
            "ttfb": ttfb(port, token, args.ttfb_n)}


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds (the keys the report reads), with every round kept."""
    out: dict[str, Any] = {"rounds": rounds}
    for key in ("ns_c1", "ns_c32", "st_c32"):
        runs = [r[key] for r in rounds]
        out[key] = {"rps": round(statistics.median(x["rps"] for x in runs), 1),
                    "p50_ms": round(statistics.median(x["p50_ms"] for x in runs), 3),
                    "p99_ms": round(statistics.median(x["p99_ms"] for x in runs), 3),
                    "requests": sum(x["requests"] for x in runs),
                    "errors": sum(x["errors"] for x in runs), "non2xx": sum(x["non2xx"] for x in runs)}
    out["ttfb"] = {"n": sum(r["ttfb"]["n"] for r in rounds),
                   "p50_ms": round(statistics.median(r["ttfb"]["p50_ms"] for r in rounds), 3),
                   "p99_ms": round(statistics.median(r["ttfb"]["p99_ms"] for r in rounds), 3)}
    return out


def report_line(name: str, result: dict[str, Any]) -> None:
    for key in ("ns_c1", "ns_c32", "st_c32"):
        r = result[key]
        print(f"   {name} {key}: {r['rps']:.0f} req/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
              f"errors {r['errors'] + r['non2xx']}", flush=True)
    print(f"   {name} ttfb p50 {result['ttfb']['p50_ms']:.3f} ms", flush=True)


# ---------------------------------------------------------------- the gateways


def start_passthrough(upstream: str, workdir: Path, wrap: Sequence[str] = ()) -> tuple[Proc, int, str | None]:
    """The pass-through on core 0 (``wrap``: a command to run it under, such as valgrind)."""
    port = free_port()
    proc = Proc([*wrap, sys.executable, __file__, "passthrough", "--port", str(port), "--upstream", upstream], 0,
                workdir / "passthrough.log")
    wait_ready(f"http://{HOST}:{port}/health", proc)
    return proc, port, None


def start_shoal(upstream: str, workdir: Path, wrap: Sequence[str] = ()) -> tuple[Proc, int, str | None]:
    """``shoal serve`` on core 0 with a key made through the admin API (``wrap`` as for the pass-through)."""
    port, home, admin = free_port(), workdir / "shoal-home", "bench-admin-token"
    config = workdir / "shoal.yaml"
    config.write_text(f"""models:
  - id: {MODEL}
    pricing: {{input: 0.15, output: 0.6}}
    deployments:
      - type: openai
        base_url: {upstream}/v1
        model: fake
        max_concurrency: 256
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env |= {"SHOAL_ADMIN_TOKEN": admin, "SHOAL_HOME": str(home)}
    proc = Proc([*wrap, sys.executable, "-m", "shoal.cli", "serve", "--config", str(config), "--port", str(port)], 0,
                workdir / "shoal.log", env=env)
    wait_ready(f"http://{HOST}:{port}/health", proc)
    status, key = http_json("POST", f"http://{HOST}:{port}/admin/keys", {"name": "bench"}, admin)
    if status != 201:
        raise RuntimeError(f"could not create a key: {status} {key}")
    return proc, port, key["key"]


def shoal_usage(port: int) -> int:
    """Requests metered (usage rows) so far."""
    status, summary = http_json("GET", f"http://{HOST}:{port}/admin/usage?by=key", token="bench-admin-token")
    return sum(int(row.get("requests", 0)) for row in summary["data"]) if status == 200 else -1


def start_litellm(upstream: str, workdir: Path, exe: str) -> tuple[Proc, int, str | None]:
    port, master = free_port(), "sk-bench-master-key"
    config = workdir / "litellm.yaml"
    config.write_text(f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/fake
      api_base: {upstream}/v1
      api_key: fake-upstream-key
litellm_settings:
  set_verbose: false
  json_logs: true
general_settings:
  master_key: {master}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM"))}
    env |= {"LITELLM_LOG": "ERROR", "NO_DOCS": "True"}
    proc = Proc([exe, "--config", str(config), "--host", HOST, "--port", str(port), "--num_workers", "1"], 0,
                workdir / "litellm.log", env=env)
    wait_ready(f"http://{HOST}:{port}/health/liveliness", proc, timeout=180)
    return proc, port, master


def version_of(exe: str) -> str:
    python = Path(exe).with_name("python")
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "shoal_commit": commit, "wrk": wrk_version,
            "versions": {p: md.version(p) for p in ("uvicorn", "starlette", "fastapi", "aiohttp", "uvloop")},
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def main(args: argparse.Namespace) -> int:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install -y {tool})", file=sys.stderr)
            return 2
    os.sched_setaffinity(0, {1})  # this driver (TTFB client, RSS sampler) shares core 1 with wrk and the upstream
    info = machine()
    results: dict[str, Any] = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "func"},
                               "targets": {}, "notes": []}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        workdir = Path(tmp)
        up_port = free_port()
        upstream = Proc([sys.executable, __file__, "upstream", "--port", str(up_port)], 1, workdir / "upstream.log")
        up_url = f"http://{HOST}:{up_port}"
        try:
            time.sleep(0.5)
            gateways: list[tuple[str, Callable[[], tuple[Proc, int, str | None]]]] = [
                ("passthrough", lambda: start_passthrough(up_url, workdir)),
                ("shoal", lambda: start_shoal(up_url, workdir))]
            if args.litellm and Path(args.litellm).exists():
                info["versions"]["litellm"] = version_of(args.litellm)
                gateways.append(("litellm", lambda: start_litellm(up_url, workdir, args.litellm)))
            else:
                results["notes"].append(f"LiteLLM not run: {args.litellm} not found")
            running: dict[str, tuple[Proc, int, str | None]] = {}
            for name, start in gateways:
                try:
                    running[name] = start()
                except Exception as exc:  # noqa: BLE001 - one gateway failing to start must not end the run
                    results["notes"].append(f"{name} did not start: {exc}")
                    print(f"!! {name} did not start: {exc}", flush=True)
            targets: dict[str, tuple[str, int, str | None]] = {"upstream": (up_url, up_port, None)}
            targets |= {name: (f"http://{HOST}:{port}", port, token) for name, (_, port, token) in running.items()}
            for url, _, token in targets.values():
                wrk(url, token, stream=False, conns=8, seconds=2, workdir=workdir)  # warm-up
            # Interleaved rounds: the machine's speed drifts (shared cores), so every target is measured
            # in every round, in a rotating order, and the report gives medians over the rounds.
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            names = list(targets)
            for rnd in range(args.rounds):
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                print(f"== round {rnd + 1}/{args.rounds}: {', '.join(order)}", flush=True)
                for name in order:
                    url, port, token = targets[name]
                    rounds[name].append(measure_round(name, url, port, token, args, workdir))
            for name in names:
                results["targets"][name] = combine(rounds[name])
                report_line(name, results["targets"][name])
            try:
                for name, (proc, port, token) in running.items():
                    res = results["targets"][name]
                    cap = min(args.rss_cap, max(15.0, RSS_REQUESTS / max(1.0, res["ns_c32"]["rps"]) * 1.5 + 5))
                    res["rss"] = m = rss_run(f"http://{HOST}:{port}", token, proc.pid, workdir, cap)
                    print(f"   {name} rss {m['start_mib']} -> {m['end_mib']} MiB (peak {m['peak_mib']}) over "
                          f"{m['requests']} requests", flush=True)
                    if name == "shoal":
                        time.sleep(1.0)
                        res["metered_requests"] = shoal_usage(port)
                        sent = sum(x["requests"] for x in (res["ns_c1"], res["ns_c32"], res["st_c32"]))
                        res["sent_requests_at_least"] = sent + res["ttfb"]["n"] + m["requests"]
            finally:
                for proc, _, _ in running.values():
                    proc.stop()
        finally:
            upstream.stop()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    from gateway_report import write_outputs  # noqa: E402 - beside this file

    write_outputs(results, OUT)
    print(f"wrote {OUT}/gateway.json, gateway.md, gateway.png in {results['elapsed_s']} s")
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("upstream", help="run the fake upstream")
    up.add_argument("--port", type=int, required=True)
    pt = sub.add_parser("passthrough", help="run the pass-through floor proxy")
    pt.add_argument("--port", type=int, required=True)
    pt.add_argument("--upstream", required=True)
    parser.add_argument("--litellm", default="/tmp/litellm-venv/bin/litellm", help="the litellm executable")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--ttfb-n", type=int, default=60, help="streamed requests timed for TTFB per round (default 60)")
    parser.add_argument("--rss-cap", type=float, default=170.0, help="longest RSS run, seconds (default 170)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.command == "upstream":
        from gateway_servers import run_upstream

        run_upstream(args.port)
        return 0
    if args.command == "passthrough":
        from gateway_servers import run_passthrough

        run_passthrough(args.port, args.upstream)
        return 0
    return main(args)


if __name__ == "__main__":
    sys.exit(cli())
