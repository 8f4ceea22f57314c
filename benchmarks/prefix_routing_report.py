"""The prefix-routing benchmark's numbers and report: summary per policy, README table, plot.

Pure functions over the samples ``benchmarks/prefix_routing.py`` collects (and ``results.json`` keeps),
so the report can be rewritten without rerunning (``--report-only``).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

POLICIES = ("prefix", "least_outstanding")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def follow_ups(samples: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each follow-up turn with the turn before it in its conversation: (previous, follow-up)."""
    by: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        by.setdefault(sample["conversation"], []).append(sample)
    turns = [sorted(ss, key=lambda x: x["turn"]) for ss in by.values()]
    return [(a, b) for ss in turns for a, b in zip(ss, ss[1:])]


def switches(samples: list[dict[str, Any]]) -> int:
    """How many times a conversation's next turn went to another server than its previous turn."""
    return sum(a["deployment"] != b["deployment"] for a, b in follow_ups(samples))


def moved_vs_stayed(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Follow-ups' cache hit when they stayed on their server vs. moved, and the new text each brings.

    ``new_tokens`` is a follow-up's prompt minus the previous prompt and answer: the turn's own text,
    which no policy can have cached.
    """
    pairs = [pair for ph in phases for pair in follow_ups(ph["samples"])]
    out: dict[str, Any] = {"new_tokens": statistics.mean(b["prompt_tokens"] - a["prompt_tokens"]
                                                         - a["completion_tokens"] for a, b in pairs) if pairs else 0}
    for name, moved in (("stayed", False), ("moved", True)):
        mine = [b for a, b in pairs if (a["deployment"] != b["deployment"]) == moved]
        out[name] = len(mine)
        out[f"{name}_hit"] = sum(b["cached_tokens"] for b in mine) / max(1, sum(b["prompt_tokens"] for b in mine))
    return out


def phase_line(index: int, ph: dict[str, Any]) -> str:
    """One phase in the report: its hit ratio, TTFT, wall time and the load average before it."""
    samples = ph["samples"]
    prompt = sum(x["prompt_tokens"] for x in samples)
    hit = sum(x["cached_tokens"] for x in samples) / max(1, prompt)
    ttfts = [x["ttft_s"] * 1000 for x in samples if x["ttft_s"] is not None]
    return (f"- Phase {index + 1} ({ph['policy']}): cache hit {hit:.1%}, TTFT p50 "
            f"{statistics.median(ttfts) if ttfts else float('nan'):.0f} ms, {ph['wall_s']:.0f} s for "
            f"{len(samples)} requests, {switches(samples)} server switches; load average before "
            f"{[round(x, 2) for x in ph['loadavg_before']]}")


def round_line(pair: list[dict[str, Any]]) -> str:
    """The two phases of one round: each policy's TTFT p50 and the load average it ran under."""
    parts = []
    for ph in sorted(pair, key=lambda x: POLICIES.index(x["policy"])):
        ttfts = [x["ttft_s"] * 1000 for x in ph["samples"] if x["ttft_s"] is not None]
        parts.append(f"{ph['policy']} {statistics.median(ttfts) if ttfts else float('nan'):.0f} ms "
                     f"(load {ph['loadavg_before'][0]:.1f})")
    return " vs ".join(parts)


def hit_by_turn(samples: list[dict[str, Any]]) -> list[float]:
    """Cached / prompt tokens of each turn (index 0 is every conversation's first turn)."""
    turns = max((s["turn"] for s in samples), default=-1) + 1
    return [sum(s["cached_tokens"] for s in samples if s["turn"] == t)
            / max(1, sum(s["prompt_tokens"] for s in samples if s["turn"] == t)) for t in range(turns)]


def summarise(phases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for policy in POLICIES:
        mine = [p for p in phases if p["policy"] == policy]
        samples = [s for p in mine for s in p["samples"]]
        ttfts = [s["ttft_s"] * 1000 for s in samples if s["ttft_s"] is not None]
        later = [s for s in samples if s["turn"] > 0]
        spread: dict[str, int] = {}
        for s in samples:
            spread[s["deployment"]] = spread.get(s["deployment"], 0) + 1
        out[policy] = {
            "requests": len(samples),
            "errors": sum(1 for s in samples if s.get("error")),  # run1 kept no errors
            "cache_hit_ratio": sum(s["cached_tokens"] for s in samples) / max(1, sum(s["prompt_tokens"]
                                                                                      for s in samples)),
            "cache_hit_ratio_later_turns": sum(s["cached_tokens"] for s in later) / max(1, sum(s["prompt_tokens"]
                                                                                                for s in later)),
            "ttft_p50_ms": statistics.median(ttfts) if ttfts else float("nan"),
            "ttft_p90_ms": pct(ttfts, 0.9),
            "throughput_tok_s": sum(s["completion_tokens"] for p in mine for s in p["samples"])
            / max(1e-9, sum(p["wall_s"] for p in mine)),
            "requests_per_s": len(samples) / max(1e-9, sum(p["wall_s"] for p in mine)),
            "prompt_tokens_mean": statistics.mean(s["prompt_tokens"] for s in samples) if samples else 0,
            "spread": spread,
            "server_switches": sum(switches(ph["samples"]) for ph in mine),
            "uncached_tokens_per_request": sum(s["prompt_tokens"] - s["cached_tokens"] for s in samples)
            / max(1, len(samples)),
            "ttfts_ms": ttfts,
            "hit_by_turn": hit_by_turn(samples),
        }
    return out


def plot(summary: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    names = list(POLICIES)
    colors = ["#2a7ab0", "#c0504d"]
    axes[0].bar(names, [summary[n]["cache_hit_ratio"] * 100 for n in names], color=colors)
    axes[0].set_title("cached / prompt tokens (%)")
    for n, c in zip(names, colors):
        values = sorted(summary[n]["ttfts_ms"])
        axes[1].plot(values, [(i + 1) / len(values) for i in range(len(values))], label=n, color=c)
    axes[1].set_title("TTFT CDF (ms)")
    axes[1].legend()
    axes[2].bar(names, [summary[n]["throughput_tok_s"] for n in names], color=colors)
    axes[2].set_title("throughput (completion tok/s)")
    for n, c in zip(names, colors):
        hits = summary[n]["hit_by_turn"]
        axes[3].plot(range(1, len(hits) + 1), [h * 100 for h in hits], marker="o", label=n, color=c)
    axes[3].set_title("cached / prompt tokens by turn (%)")
    axes[3].set_xlabel("turn")
    axes[3].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


PRIOR_RUNS = {
    "run1-4slots-lockstep.json":
        "4 slots per server, conversations started 2 s apart in a fixed order, 30 s upstream first-byte timeout. "
        "No gain: least outstanding happened to send most turns back to the same server (its ties go to the first "
        "deployment, and lockstep arrivals repeat), the `prefix` policy put 5 conversations on a 4-slot server "
        "(slot cache thrash), and 3 of its conversations got answers without usage while first tokens took over "
        "30 s (the upstream `first_byte` timeout, we think; the log was not kept).",
    "run2-2servers-400word-system.json":
        "8 slots per server and randomised arrivals as here, but the shared system prompt (~400 words) was most of "
        "every prompt, and llama.cpp reuses it on any server, so least outstanding already cached most prompt "
        "tokens and 2x was out of reach; with 2 servers, too, a follow-up turn that moved had only one other "
        "server to go to.",
}


def workload(cfg: dict[str, Any], phases: int) -> str:
    """The conditions of a run, in one paragraph."""
    servers = cfg.get("servers", 2)
    return (f"{servers} llama.cpp servers (xllamacpp, SmolLM2-135M, {cfg['slots']} slots × {cfg['ctx']} ctx, "
            f"{cfg['threads']} thread each, `cache_prompt` on, host prompt cache {cfg['cache_ram_mib']} MiB) behind "
            f"one `shoal serve`; {cfg['conversations']} conversations × {cfg['turns']} turns at once per phase, a "
            f"~{cfg['system_words']}-word shared system prompt, a ~{cfg['doc_words']}-word document pasted per turn "
            f"(so the conversation's own history grows by a document and an answer each turn), max_tokens "
            f"{cfg['max_tokens']}, temperature 0; conversations start at random within "
            f"{cfg.get('start_within_s', 0):g} s and pause {cfg['think_s']:g} s on average between turns (the same "
            f"arrivals for both policies of a round). {phases} phases, policies alternating ABBA; `prefix` with "
            f"abs_threshold {cfg['abs_threshold']}, rel_threshold 1.5.")


def prior_line(path: Path) -> str:
    """One earlier run kept beside the results: its workload, headline numbers and what it taught."""
    old = json.loads(path.read_text())
    s, cfg = summarise(old["phases"]), old["config"]
    p, lo = s["prefix"], s["least_outstanding"]
    return (f"- `{path.name}` ({old['date'][:16]}, {cfg.get('servers', 2)} servers, {cfg['conversations']} "
            f"conversations × {cfg['turns']} turns, ~{cfg['system_words']}-word system prompt, ~{cfg['doc_words']}-word "
            f"documents): cache hit {p['cache_hit_ratio']:.1%} vs {lo['cache_hit_ratio']:.1%} "
            f"({p['cache_hit_ratio'] / max(1e-9, lo['cache_hit_ratio']):.2f}x), TTFT p50 {p['ttft_p50_ms']:.0f} vs "
            f"{lo['ttft_p50_ms']:.0f} ms, {p['throughput_tok_s']:.1f} vs {lo['throughput_tok_s']:.1f} tok/s. "
            + PRIOR_RUNS.get(path.name, ""))


def reading(result: dict[str, Any], ratio: float) -> list[str]:
    """What the numbers say, worded from the numbers (so a rerun cannot keep a stale claim)."""
    s, cfg = result["summary"], result["config"]
    p, lo = s["prefix"], s["least_outstanding"]
    m = moved_vs_stayed([ph for ph in result["phases"] if ph["policy"] == "least_outstanding"])
    out = [f"- Follow-up turns that changed servers: {p['server_switches']} under `prefix`, "
           f"{lo['server_switches']} of {m['stayed'] + m['moved']} under least outstanding. A turn that moves finds "
           "at most the shared system prompt (and whatever of its own history it left there on an earlier visit) "
           f"cached: under least outstanding, follow-ups that moved had {m['moved_hit']:.0%} of their prompt "
           f"cached, those that stayed {m['stayed_hit']:.0%}. Prompt tokens computed (not cached) per request: "
           f"{p['uncached_tokens_per_request']:.0f} vs {lo['uncached_tokens_per_request']:.0f}; each follow-up "
           f"brings ~{m['new_tokens']:.0f} tokens of new text that no policy can have cached."]
    spread = p["spread"]
    top = max(spread, key=spread.__getitem__) if spread else None
    if top and spread[top] > 1.5 * p["requests"] / max(1, cfg.get("servers", 2)):
        out.append(f"- Under `prefix`, {spread[top]} of {p['requests']} requests went to {top}: a new conversation's "
                   "first turn matches the shared system prompt on the server that served it first, so conversations "
                   f"gather there until it has more than abs_threshold ({cfg['abs_threshold']}) requests outstanding "
                   "beyond the least-loaded server.")
    gap = abs(p["ttft_p50_ms"] - lo["ttft_p50_ms"]) / max(1e-9, lo["ttft_p50_ms"])
    if gap < 0.05:
        out.append(f"- The median TTFTs differ by {gap:.1%}, well within the noise of this shared machine (see the "
                   f"rounds below); compare the p90 as well ({p['ttft_p90_ms']:.0f} vs {lo['ttft_p90_ms']:.0f} "
                   "ms).")
    if ratio < 2:
        need = 2 * lo["cache_hit_ratio"]
        out.append(f"- 2x least outstanding's {lo['cache_hit_ratio']:.1%} would take {need:.1%} of prompt tokens "
                   + ("cached, over 100%: this workload cannot meet that target." if need > 1 else
                      "cached; turn 1 of every conversation can reuse at most the system prompt, which caps the "
                      "ratio below 100%.")
                   + " Least outstanding caches that much because most follow-ups stay on their server anyway "
                   f"({m['stayed']} of {m['stayed'] + m['moved']}) and llama.cpp reuses the shared system prompt on "
                   "any server. The prompt tokens *computed* per request (above) measure what affinity saves more "
                   "directly.")
    out.append("- TTFT here is dominated by CPU contention (the llama.cpp servers, Shoal, the client and other jobs "
               "on 2 cores), and the load average moved during the run, so compare the phases of one round as well: "
               + "; ".join(round_line(result["phases"][i:i + 2]) for i in range(0, len(result["phases"]) - 1, 2))
               + ".")
    return out


def report(result: dict[str, Any], path: Path) -> None:
    s, cfg = result["summary"], result["config"]
    p, lo = s["prefix"], s["least_outstanding"]
    ratio = p["cache_hit_ratio"] / max(1e-9, lo["cache_hit_ratio"])
    verdicts = [
        (ratio >= 2, f"cached-token ratio >= 2x least-outstanding: {ratio:.2f}x "
                     f"({p['cache_hit_ratio']:.1%} vs {lo['cache_hit_ratio']:.1%})"),
        (p["ttft_p50_ms"] < lo["ttft_p50_ms"], f"lower median TTFT: {p['ttft_p50_ms']:.0f} ms vs "
                                                f"{lo['ttft_p50_ms']:.0f} ms"),
        (p["throughput_tok_s"] >= lo["throughput_tok_s"] * 0.97,
         f"throughput no worse (within 3%): {p['throughput_tok_s']:.1f} vs {lo['throughput_tok_s']:.1f} tok/s"),
    ]
    rows = [("Cache hit ratio (cached / prompt tokens)", f"{p['cache_hit_ratio']:.1%}", f"{lo['cache_hit_ratio']:.1%}"),
            ("… turns 2+ only", f"{p['cache_hit_ratio_later_turns']:.1%}", f"{lo['cache_hit_ratio_later_turns']:.1%}"),
            ("… by turn", " / ".join(f"{h:.0%}" for h in p["hit_by_turn"]),
             " / ".join(f"{h:.0%}" for h in lo["hit_by_turn"])),
            ("TTFT p50 (ms)", f"{p['ttft_p50_ms']:.0f}", f"{lo['ttft_p50_ms']:.0f}"),
            ("TTFT p90 (ms)", f"{p['ttft_p90_ms']:.0f}", f"{lo['ttft_p90_ms']:.0f}"),
            ("Throughput (completion tok/s)", f"{p['throughput_tok_s']:.1f}", f"{lo['throughput_tok_s']:.1f}"),
            ("Requests/s", f"{p['requests_per_s']:.2f}", f"{lo['requests_per_s']:.2f}"),
            ("Mean prompt tokens", f"{p['prompt_tokens_mean']:.0f}", f"{lo['prompt_tokens_mean']:.0f}"),
            ("Prompt tokens computed (not cached) per request", f"{p['uncached_tokens_per_request']:.0f}",
             f"{lo['uncached_tokens_per_request']:.0f}"),
            ("Turns that moved to another server", str(p["server_switches"]), str(lo["server_switches"])),
            ("Requests per server", json.dumps(p["spread"], sort_keys=True), json.dumps(lo["spread"], sort_keys=True)),
            ("Failed requests", str(p["errors"]), str(lo["errors"]))]
    priors = sorted(path.parent.glob("run*.json"))
    lines = [
        "# Prefix (cache-affinity) routing vs. least outstanding",
        "",
        f"{result['machine']}; {result['date']}; Shoal commit {result['commit']}.",
        "",
        workload(cfg, len(result["phases"])),
        "",
        "| Metric | prefix | least outstanding |",
        "|---|---:|---:|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        "![prefix routing](prefix-routing.png)",
        "",
        "## Targets",
        "",
        *(f"- **{'PASS' if ok else 'FAIL'}** — {text}" for ok, text in verdicts),
        "",
        "## Reading",
        "",
        *reading(result, ratio),
        "",
        "## Conditions",
        "",
        f"- Load average (1/5/15 min) at start {result['loadavg_start']}, at end {result['loadavg_end']}; "
        f"the machine's 2 cores are shared with other work. Run took {result['elapsed_s']:.0f} s.",
        *(phase_line(i, ph) for i, ph in enumerate(result["phases"])),
        "",
        "## Method",
        "",
        "- Each phase uses a new system prompt (a nonce at its start), so neither policy inherits warm caches.",
        "- Cache hit ratio sums `usage.prompt_tokens_details.cached_tokens` over `usage.prompt_tokens` (what "
        "llama.cpp reports, relayed by Shoal). TTFT is client side: request sent to first content delta, over "
        "127.0.0.1 through Shoal. Throughput is completion tokens over the phases' wall time.",
        "- Under least outstanding a conversation's next turn lands on any server; llama.cpp still reuses the "
        "shared system prompt there (its slots keep their last prompt, and the host prompt cache keeps more), so "
        "the difference is the conversation's own history.",
        *(["", "## Earlier runs", "", *(prior_line(f) for f in priors)] if priors else []),
        "",
        "Rerun: `PYTHONPATH=src /work/main/.venv/bin/python benchmarks/prefix_routing.py` (the defaults are this "
        "workload; raw samples in `results.json`).",
        "",
    ]
    path.write_text("\n".join(lines))
