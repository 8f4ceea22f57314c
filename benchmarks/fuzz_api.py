#!/usr/bin/env python
"""Schemathesis over every operation of Shoal's OpenAPI document: what it sent and what came back.

Starts a real uvicorn on 127.0.0.1 serving Shoal with a scripted model (static key and admin API
on), runs the document's examples and then generated valid and invalid requests for each
operation (``tests/api_fuzz.py``, the same driver as the test suite's bounded run), and writes
the corpus size, the status-code histogram (overall and per operation), every 5xx and every
error logged to ``docs/benchmarks/fuzz-api.json``. Rerun::

    python benchmarks/fuzz_api.py                  # ~1-2 min on 2 cores
    python benchmarks/fuzz_api.py --examples 100 --seconds 600
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.api_fuzz import fuzz, fuzz_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50, help="generated examples per operation and mode")
    parser.add_argument("--seconds", type=float, default=240.0, help="stop starting new cases after this long")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "fuzz-api.json")
    args = parser.parse_args()
    with fuzz_server() as url:
        report = fuzz(url, max_examples=args.examples, seconds=args.seconds)
    import schemathesis

    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "schemathesis": schemathesis.__version__, "python": platform.python_version(),
        "examples_per_operation_and_mode": args.examples, "budget_seconds": args.seconds,
        **report.as_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{report.cases} cases over {report.operations} operations in {report.seconds:.0f} s; "
          f"statuses {dict(sorted(report.statuses.items()))}; 5xx: {len(report.server_errors)}; "
          f"errors logged: {len(report.logged_errors)} -> {args.out}")
    return 1 if report.server_errors or report.logged_errors else 0


if __name__ == "__main__":
    sys.exit(main())
