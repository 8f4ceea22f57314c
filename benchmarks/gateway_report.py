"""The gateway benchmark's outputs: ``gateway.json``, the ``gateway.md`` table with targets, ``gateway.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FLAT_MIB = 8.0
"""RSS growth over the 10,000-request run still counted as flat."""

LABELS = {"upstream": "fake upstream (direct)", "passthrough": "pass-through (Starlette + aiohttp)",
          "shoal": "Shoal (auth + metering + routing)", "litellm": "LiteLLM proxy"}


def added(results: dict[str, Any], name: str) -> dict[str, float]:
    """What a gateway adds over the upstream alone, in ms (p50/p99 non-streaming at c=1, TTFB p50)."""
    up, gw = results["targets"]["upstream"], results["targets"][name]
    return {"p50_ms": gw["ns_c1"]["p50_ms"] - up["ns_c1"]["p50_ms"],
            "p99_ms": gw["ns_c1"]["p99_ms"] - up["ns_c1"]["p99_ms"],
            "ttfb_ms": gw["ttfb"]["p50_ms"] - up["ttfb"]["p50_ms"]}


def checks(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Shoal's targets: (what, measured, pass)."""
    t = results["targets"]
    if "shoal" not in t or "passthrough" not in t:
        return []
    shoal, floor = t["shoal"], t["passthrough"]
    add = added(results, "shoal")
    ratio = shoal["ns_c32"]["rps"] / floor["ns_c32"]["rps"]
    rss = shoal["rss"]
    growth = rss["end_mib"] - rss["start_mib"]
    out = [
        ("requests/s (non-streaming, c=32) >= 1/2 of the pass-through",
         f"{shoal['ns_c32']['rps']:.0f} vs {floor['ns_c32']['rps']:.0f} = {ratio:.2f}x", ratio >= 0.5),
        ("added p50 latency (non-streaming, c=1) <= 1 ms", f"{add['p50_ms']:.3f} ms", add["p50_ms"] <= 1.0),
        ("added time to first byte (streaming, c=1) <= 1 ms", f"{add['ttfb_ms']:.3f} ms", add["ttfb_ms"] <= 1.0),
        ("RSS < 150 MiB (catalog without local models)", f"peak {rss['peak_mib']:.0f} MiB", rss["peak_mib"] < 150),
        (f"RSS flat over {rss['requests']:,} requests (growth <= {FLAT_MIB:g} MiB)",
         f"{rss['start_mib']:.0f} -> {rss['end_mib']:.0f} MiB ({growth:+.1f})", growth <= FLAT_MIB),
    ]
    return out


def versus_litellm(results: dict[str, Any]) -> str:
    """Shoal's and the floor's requests/s as multiples of LiteLLM's (the issue expects about 20x)."""
    t = results["targets"]
    if "litellm" not in t:
        return ""
    base = t["litellm"]["ns_c32"]["rps"]
    parts = [f"{LABELS[n]} {t[n]['ns_c32']['rps'] / base:.1f}x" for n in ("shoal", "passthrough") if n in t]
    return "Non-streaming requests/s as a multiple of LiteLLM's: " + ", ".join(parts) + "."


def table(results: dict[str, Any]) -> str:
    rows = ["| | req/s non-streaming c=32 | req/s streaming c=32 | p50 / p99 c=1 (ms) | added p50 / p99 (ms) "
            "| TTFB p50 (ms) | added TTFB (ms) | RSS start → end (peak), MiB | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["targets"].items():
        ns1, ns, st = r["ns_c1"], r["ns_c32"], r["st_c32"]
        errors = sum(r[k]["errors"] + r[k]["non2xx"] for k in ("ns_c1", "ns_c32", "st_c32"))
        if name == "upstream":
            add = "—"
            addt = "—"
        else:
            a = added(results, name)
            add = f"{a['p50_ms']:.3f} / {a['p99_ms']:.3f}"
            addt = f"{a['ttfb_ms']:.3f}"
        rss = r.get("rss")
        mem = f"{rss['start_mib']:.0f} → {rss['end_mib']:.0f} ({rss['peak_mib']:.0f})" if rss else "—"
        if rss:
            errors += rss["errors"]
        rows.append(f"| {LABELS.get(name, name)} | {ns['rps']:,.0f} | {st['rps']:,.0f} | "
                    f"{ns1['p50_ms']:.3f} / {ns1['p99_ms']:.3f} | {add} | {r['ttfb']['p50_ms']:.3f} | {addt} | "
                    f"{mem} | {errors} |")
    return "\n".join(rows)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = ["# Gateway overhead", "",
             "Shoal, the LiteLLM proxy and a minimal pass-through proxy (the floor), all running for the whole run "
             "and measured in interleaved rounds, "
             "each in front of the same very fast fake OpenAI-compatible upstream. Each gateway is pinned to core 0; "
             "wrk, the fake upstream and the driver share core 1. Added latency is the gateway's minus the "
             "upstream's own, at concurrency 1.", "",
             table(results), ""]
    verdicts = checks(results)
    if verdicts:
        lines += ["## Targets (Shoal)", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {what} | {got} | {'PASS' if ok else 'FAIL'} |" for what, got, ok in verdicts]
        lines.append("")
    if versus_litellm(results):
        lines += [versus_litellm(results), ""]
    shoal = results["targets"].get("shoal")
    if shoal:
        lines += [f"Metering check: Shoal recorded {shoal['metered_requests']:,} usage rows for at least "
                  f"{shoal['sent_requests_at_least']:,} requests sent (warm-ups included in the rows).", ""]
    a = results["args"]
    lines += ["## How it was measured", "",
              f"- Every target runs for the whole measurement, and the measurements run in {a['rounds']} "
              "interleaved rounds (each round measures every target, in a rotating order); the table gives "
              "the median over the rounds. The machine's speed drifts, so targets measured one after the "
              "other in long blocks gave ratios that moved by half between runs.",
              f"- Non-streaming: `wrk -t1 -c1` and `-c32`, {a['duration']:g} s each per round after a 2 s "
              "warm-up, POST `/v1/chat/completions` with a small body (Lua script); p50/p99 from wrk's latency "
              "histogram.",
              "- Streaming: `wrk -t1 -c32` for requests/s; time to first byte = time from sending the request to "
              f"the first `data:` line, raw socket, keep-alive, concurrency 1, median of {a['ttfb_n']} per round.",
              "- RSS: the gateway's process tree (psutil, every 0.2 s) during 10,000 non-streaming requests at "
              "concurrency 32 (wrk stops itself at 10,000 responses).",
              "- Shoal: `shoal serve --config` with a catalog model whose deployment is `type: openai` at the fake "
              "upstream; auth on (a managed key created through the admin API), metering on (a usage row per "
              "request in SQLite), routing on.",
              "- LiteLLM: `litellm --config` (model_list with `openai/` model and `api_base`, master key), "
              "`--num_workers 1`, no database, `LITELLM_LOG=ERROR`, installed in its own virtualenv.", "",
              "## Machine", "",
              f"{m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}; load average at start "
              f"{', '.join(str(x) for x in m['loadavg_at_start'])} (at the end "
              f"{', '.join(str(x) for x in m.get('loadavg_at_end', []))}); Shoal commit {m['shoal_commit']}; "
              f"{m['wrk']}; "
              + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; {m['date']}; whole run "
              f"{results['elapsed_s']:.0f} s.", ""]
    if results["notes"]:
        lines += ["Notes: " + "; ".join(results["notes"]), ""]
    lines += ["## Rerun", "", "```bash", "apt-get install -y wrk",
              "python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'",
              "/work/venv/bin/python benchmarks/bench_gateway.py   # ~5-6 min", "```", "",
              "Raw numbers (and RSS samples): [gateway.json](gateway.json). Plot: ![gateway](gateway.png)", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gws = [n for n in results["targets"] if n != "upstream"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    x = range(len(gws))
    ns = [results["targets"][n]["ns_c32"]["rps"] for n in gws]
    st = [results["targets"][n]["st_c32"]["rps"] for n in gws]
    axes[0].bar([i - 0.2 for i in x], ns, 0.4, label="non-streaming")
    axes[0].bar([i + 0.2 for i in x], st, 0.4, label="streaming")
    axes[0].set_xticks(list(x), gws)
    axes[0].set_ylabel("requests/s (c=32, one core)")
    axes[0].set_title("Throughput")
    axes[0].legend()
    adds = [added(results, n) for n in gws]
    axes[1].bar([i - 0.2 for i in x], [max(a["p50_ms"], 0.01) for a in adds], 0.4, label="added p50 (c=1)")
    axes[1].bar([i + 0.2 for i in x], [max(a["ttfb_ms"], 0.01) for a in adds], 0.4, label="added TTFB (c=1)")
    axes[1].axhline(1.0, color="red", linestyle="--", linewidth=1, label="1 ms target")
    axes[1].set_yscale("log")
    axes[1].set_xticks(list(x), gws)
    axes[1].set_ylabel("ms (log)")
    axes[1].set_title("Added latency")
    axes[1].legend()
    for n in gws:
        rss = results["targets"][n].get("rss")
        if rss:
            axes[2].plot([s[0] for s in rss["samples"]], [s[1] for s in rss["samples"]], label=n)
    axes[2].axhline(150, color="red", linestyle="--", linewidth=1, label="150 MiB target")
    axes[2].set_xlabel("seconds into the 10,000-request run")
    axes[2].set_ylabel("RSS (MiB)")
    axes[2].set_title("Memory")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """Write the three files."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "gateway.md").write_text(markdown(results))
    plot(results, out / "gateway.png")
