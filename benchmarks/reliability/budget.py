"""Budget overshoot: many requests at once against a key whose budget covers only a few of them.

The key is made with ``shoal keys create --budget`` (straight into the database, as
an operator would). Its requests all start together (a barrier) and the upstream
answers slowly enough that they are all in flight before the first one settles, so
the admission check is raced as hard as it can be.

Figures: how many were admitted (200) and refused (429); the reservation each took
(Shoal's documented upper bound: prompt UTF-8 bytes + 16 per message + 256 template
tokens at the input price, plus ``max_tokens`` at the output price); how many
reservations fit in the budget (``floor(budget / reservation)``) and how many were
admitted beyond that; and the spend the usage rows record, beyond the budget.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from benchmarks.reliability.calls import PROMPT
from benchmarks.reliability.stack import PRICES, Stack, model_id

PER_MESSAGE_TOKENS = 16
TEMPLATE_TOKENS = 256


def reservation_usd(max_tokens: int) -> float:
    """The most one budget request can cost, as Shoal reserves it (docs/keys-and-usage.md, Budgets)."""
    prompt = len(PROMPT.encode()) + PER_MESSAGE_TOKENS + TEMPLATE_TOKENS
    return (prompt * PRICES["input"] + max_tokens * PRICES["output"]) / 1e6


def create_budget_key(stack: Stack, budget: float, period: str = "day") -> tuple[str, str]:
    """``shoal keys create --budget`` against the run's database; (id, secret)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    out = subprocess.run([sys.executable, "-m", "shoal.cli", "keys", "create", "--name", "budget-race",
                          "--budget", repr(budget), "--period", period, "--format", "json",
                          "--database-url", stack.direct_db_url], capture_output=True, text=True, env=env,
                         timeout=60, check=True)
    key = json.loads(out.stdout)
    return key["id"], key["key"]


def run_budget(stack: Stack, *, parallel: int = 50, budget: float = 0.01, max_tokens: int = 16,
               answer_seconds: float = 1.0, settle: float = 1.5) -> dict[str, Any]:
    """``parallel`` chat completions at once against a key with ``budget`` USD; the overshoot figures."""
    assert stack.shoal is not None
    key_id, secret = create_budget_key(stack, budget)
    gap = stack.upstream.gap
    stack.upstream.gap = answer_seconds / stack.upstream.words
    barrier = threading.Barrier(parallel, timeout=60)
    api = openai.OpenAI(base_url=f"{stack.shoal.url}/v1", api_key=secret, max_retries=0, timeout=60)

    def one(_: int) -> str:
        barrier.wait()
        try:
            api.chat.completions.create(model=model_id("budget"), messages=[{"role": "user", "content": PROMPT}],
                                        max_tokens=max_tokens)
            return "200"
        except openai.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            code = (body.get("error", body) if isinstance(body, dict) else {}).get("code")
            return f"{exc.status_code} {code}" if code else str(exc.status_code)
        except openai.APIError as exc:
            return type(exc).__name__

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(parallel) as pool:
            statuses = Counter(pool.map(one, range(parallel)))
    finally:
        stack.upstream.gap = gap
        api.close()
    elapsed = round(time.monotonic() - started, 2)
    time.sleep(settle)
    rows = stack.query("SELECT status, count(*) AS n, coalesce(sum(cost_usd), 0) AS cost FROM usage "
                       "WHERE key_id = $1 GROUP BY status", key_id)
    spend = sum(float(r["cost"]) for r in rows)
    reserve = reservation_usd(max_tokens)
    admitted = statuses.get("200", 0)
    fits = math.floor(budget / reserve + 1e-9)
    return {
        "parallel": parallel, "budget_usd": budget, "max_tokens": max_tokens, "seconds": elapsed,
        "limits_store": "redis" if stack.use_redis else "in-process",
        "statuses": dict(sorted(statuses.items())), "admitted": admitted,
        "refused": sum(c for s, c in statuses.items() if s.startswith("429")),
        "refused_for_budget": statuses.get("429 insufficient_quota", 0), "reservation_usd": round(reserve, 6),
        "reservations_within_budget": fits, "admitted_beyond_budget": max(0, admitted - fits),
        "reserved_usd": round(admitted * reserve, 6),
        "reserved_beyond_budget_usd": round(max(0.0, admitted * reserve - budget), 6),
        "spend_usd": round(spend, 6), "spend_beyond_budget_usd": round(max(0.0, spend - budget), 6),
        "usage_rows": {r["status"]: int(r["n"]) for r in rows},
    }
