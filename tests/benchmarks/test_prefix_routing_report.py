"""The prefix-routing benchmark's bookkeeping: hit ratios, server switches, the report (no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.prefix_routing_report import moved_vs_stayed, report, summarise, switches


def sample(conv: int, turn: int, dep: str, prompt: int, cached: int, ttft: float = 1.0) -> dict[str, Any]:
    return {"conversation": conv, "turn": turn, "deployment": dep, "prompt_tokens": prompt, "cached_tokens": cached,
            "completion_tokens": 10, "ttft_s": ttft, "error": None}


def phase(policy: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"policy": policy, "wall_s": 10.0, "loadavg_before": (1.0, 1.0, 1.0), "samples": samples}


PHASES = [
    phase("prefix", [sample(0, 0, "a", 100, 0), sample(0, 1, "a", 200, 100), sample(1, 0, "b", 100, 0),
                     sample(1, 1, "b", 200, 100)]),
    phase("least_outstanding", [sample(0, 0, "a", 100, 0), sample(0, 1, "b", 200, 50, ttft=2.0),
                                sample(1, 0, "b", 100, 0), sample(1, 1, "b", 200, 100, ttft=2.0)]),
]


def test_switches_count_turns_that_moved() -> None:
    assert switches(PHASES[0]["samples"]) == 0
    assert switches(PHASES[1]["samples"]) == 1


def test_moved_vs_stayed_splits_follow_ups_and_counts_new_text() -> None:
    m = moved_vs_stayed([PHASES[1]])
    assert (m["stayed"], m["moved"]) == (1, 1)
    assert m["stayed_hit"] == 100 / 200 and m["moved_hit"] == 50 / 200
    assert m["new_tokens"] == 200 - 100 - 10  # prompt growth minus the previous answer


def result_of(phases: list[dict[str, Any]], servers: int = 3) -> dict[str, Any]:
    return {"summary": summarise(phases), "phases": phases, "machine": "m", "date": "2026-12-06T04:00:00",
            "commit": "c", "loadavg_start": [1, 1, 1], "loadavg_end": [1, 1, 1], "elapsed_s": 20.0,
            "config": {"servers": servers, "slots": 8, "ctx": 2048, "threads": 1, "cache_ram_mib": 512,
                       "conversations": 2, "turns": 2, "system_words": 10, "doc_words": 10, "max_tokens": 8,
                       "abs_threshold": 2, "start_within_s": 1, "think_s": 1}}


def test_summary_and_report(tmp_path: Path) -> None:
    summary = summarise(PHASES)
    assert summary["prefix"]["cache_hit_ratio"] == 200 / 600
    assert summary["least_outstanding"]["cache_hit_ratio"] == 150 / 600
    assert summary["least_outstanding"]["uncached_tokens_per_request"] == 450 / 4
    assert summary["least_outstanding"]["hit_by_turn"] == [0.0, 150 / 400]
    report(result_of(PHASES), tmp_path / "README.md")
    text = (tmp_path / "README.md").read_text()
    assert "**FAIL** — cached-token ratio >= 2x" in text and "**PASS** — lower median TTFT" in text
    assert "| Turns that moved to another server | 0 | 1 |" in text
    assert text.count("3 llama.cpp servers") == 1
    # 2 x 25% is 50%: reachable, so the report must not call the target impossible.
    assert "would take 50.0% of prompt tokens cached;" in text and "cannot meet" not in text
    assert "## Earlier runs" not in text
    assert "| … by turn | 0% / 50% | 0% / 38% |" in text
    assert "requests went to" not in text  # 2 and 2: no server took more than its share


def test_report_passes_2x_and_lists_earlier_runs(tmp_path: Path) -> None:
    cold = [phase("least_outstanding", [sample(0, 0, "a", 100, 0), sample(0, 1, "b", 200, 50)])]
    phases = [phase("prefix", [sample(0, 0, "a", 100, 0), sample(0, 1, "a", 200, 150)]), *cold]
    (tmp_path / "run2-2servers-400word-system.json").write_text(json.dumps(result_of(PHASES, servers=2)))
    report(result_of(phases), tmp_path / "README.md")
    text = (tmp_path / "README.md").read_text()
    assert "**PASS** — cached-token ratio >= 2x least-outstanding: 3.00x (50.0% vs 16.7%)" in text
    assert "would take" not in text
    assert "2 of 2 requests went to a:" in text
    earlier = text.split("## Earlier runs")[1]
    assert "`run2-2servers-400word-system.json` (2026-12-06T04:00, 2 servers" in earlier
    assert "cache hit 33.3% vs 25.0% (1.33x)" in earlier and "most of every prompt" in earlier
