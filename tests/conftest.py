"""Shared test setup: a hang guard for the fast unit tests."""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator

import pytest

HANG_SECONDS = 30.0
SLOW_PARTS = ("e2e", "test_packaged.py")


@pytest.fixture(autouse=True)
def _hang_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """A leaked slot or a lost wake-up shows as a hang: dump the stacks and exit instead of waiting forever."""
    if any(part in request.node.path.parts for part in SLOW_PARTS) or request.node.get_closest_marker("slow"):
        yield
        return
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
