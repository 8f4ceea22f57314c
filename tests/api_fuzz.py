"""Schemathesis over Shoal's OpenAPI document, against a real uvicorn serving a scripted model.

Shared by the test (``tests/api/test_openapi.py``, small and bounded) and the report script
(``benchmarks/fuzz_api.py``, which saves the corpus size and the status histogram).
Every request goes to 127.0.0.1; every run is bounded in examples and in seconds.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from shoal.app import create_app
from shoal.config import Settings
from tests.live_server import live_server
from tests.scripted import CARD, ScriptedBackend

API_KEY = "fuzz-api-key-0123456789"
ADMIN_TOKEN = "fuzz-admin-token-0123456789"


@dataclass
class FuzzReport:
    """What one run sent and got back."""

    cases: int = 0
    operations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    """One line per 5xx answer (operation, status, body start)."""
    logged_errors: list[str] = field(default_factory=list)
    """Log records at ERROR or above while the run went on."""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "cases": self.cases, "operations": self.operations, "seconds": round(self.seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "by_operation": {op: {str(k): v for k, v in sorted(c.items())} for op, c in self.by_operation.items()},
            "server_errors": self.server_errors, "logged_errors": self.logged_errors,
        }


class _Errors(logging.Handler):
    """Keeps every record at ERROR or above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()[:300]}")


@contextmanager
def fuzz_server() -> Iterator[str]:
    """A real uvicorn serving Shoal with a scripted model (4 slots), static key and admin API on."""
    with tempfile.TemporaryDirectory() as tmp:
        backend = ScriptedBackend(capacity=4)
        app = create_app(Settings(data_dir=Path(tmp), api_keys=(API_KEY,), admin_token=ADMIN_TOKEN,
                                  max_body_bytes=256 * 1024),
                         backend_factory=lambda s: [backend])
        with live_server(app) as url:
            yield url


def fuzz(base_url: str, *, max_examples: int = 20, seconds: float = 50.0) -> FuzzReport:
    """Run positive and negative examples of every operation; stop starting new ones after ``seconds``."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    errors = _Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    started = time.monotonic()
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            report.operations += 1
            label = f"{operation.method.upper()} {operation.path}"
            counts = report.by_operation.setdefault(label, Counter())
            token = ADMIN_TOKEN if operation.path.startswith("/admin") else API_KEY
            # The document's own examples first (they reach the model), then generated ones.
            for strategy in operation.get_strategies_from_examples():
                _run(strategy, GenerationMode.POSITIVE, label, base_url, token, report, counts, started, seconds, 4)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _run(operation.as_strategy(generation_mode=mode), mode, label, base_url, token, report, counts,
                     started, seconds, max_examples)
    finally:
        root.removeHandler(errors)
    report.logged_errors = errors.lines
    report.seconds = time.monotonic() - started
    return report


def _run(strategy: Any, mode: GenerationMode, label: str, base_url: str, token: str, report: FuzzReport,
         counts: Counter[int], started: float, seconds: float, max_examples: int) -> None:

    # derandomize: the examples follow from the schema alone, the same run after run.
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        if time.monotonic() - started > seconds:
            return
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and "model" in case.body:
            # A random model id is a 404 before anything else is looked at: name the served one.
            case.body["model"] = CARD.id
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        report.cases += 1
        report.statuses[response.status_code] += 1
        counts[response.status_code] += 1
        if response.status_code >= 500:
            report.server_errors.append(f"{label} {mode.value}: {response.status_code} {response.text[:300]}")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to get wrong (negative cases of an operation without parameters or body)
