"""Usage summaries as the CLI and the admin API show them: table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from shoal.storage.usage import GroupBy, UsageStore

FORMATS = ("table", "csv", "json")
GROUPS: tuple[GroupBy, ...] = ("key", "model", "day")
COLUMNS = ("requests", "failed", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens",
           "cost_usd", "avg_ttft_ms", "avg_latency_ms")
HEADINGS = {"requests": "requests", "failed": "failed", "input_tokens": "input", "cached_tokens": "cached",
            "output_tokens": "output", "reasoning_tokens": "reasoning", "cost_usd": "cost_usd",
            "avg_ttft_ms": "avg_ttft_ms", "avg_latency_ms": "avg_latency_ms"}


async def summarize(usage: UsageStore, by: GroupBy, since: float | None,
                    names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Totals per group; with ``by='key'`` each row also gets the key's ``name`` (``static`` / ``anonymous``)."""
    rows = await usage.summary(by, since)
    out = []
    for row in rows:
        group = row.pop("group")
        item: dict[str, Any] = {by: group}
        if by == "key":
            item["name"] = _key_name(group, names or {})
        item.update(row)
        out.append(item)
    return out


def _key_name(key_id: str | None, names: Mapping[str, str]) -> str:
    if key_id is None:
        return "anonymous"
    if key_id in names:
        return names[key_id]
    return "static key" if key_id.startswith("static:") else "?"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def render(rows: Sequence[Mapping[str, Any]], by: GroupBy, fmt: str) -> str:
    """The summary in ``fmt`` (table, csv or json)."""
    if fmt == "json":
        return json.dumps({"object": "list", "by": by, "data": list(rows)}, indent=2)
    head = [by, *(["name"] if by == "key" else []), *COLUMNS]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(head)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in head])
        return buffer.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    titles = [HEADINGS.get(c, c) for c in head]
    cells = [[_cell(row.get(c)) for c in head] for row in rows]
    if rows:
        totals = ["total", *([""] if by == "key" else [])]
        for c in COLUMNS:
            values = [row.get(c) for row in rows]
            totals.append("" if c.startswith("avg_") else _cell(sum(v for v in values if v is not None)))
        cells.append(totals)
    widths = [max(len(t), *(len(r[i]) for r in cells)) if cells else len(t) for i, t in enumerate(titles)]
    labels = len(head) - len(COLUMNS)
    lines = ["  ".join(v.ljust(w) if i < labels else v.rjust(w)
                       for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in [titles, *cells]]
    if not rows:
        lines.append("(no usage recorded in this range)")
    return "\n".join(lines)
