"""Building the tenancy services: where limits live, and the warning for replicas that cannot share them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shoal.auth.concurrency import LocalInFlight
from shoal.wiring.tenancy import build_tenancy
from shoal.config import Settings
from shoal.storage.db import Database


@pytest.mark.parametrize(("url", "warned"), [("postgresql+asyncpg://db.internal/shoal", True), (None, False)])
async def test_postgres_without_redis_warns_that_limits_are_per_process(
        db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str | None, warned: bool) -> None:
    settings = Settings(data_dir=tmp_path, database_url=url, max_concurrency_per_key=5)
    with caplog.at_level(logging.INFO, logger="shoal.tenancy"):
        tenancy = await build_tenancy(settings, db)  # the database given is SQLite: only the setting matters here
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert bool(warnings) == warned
        if warned:
            assert "IN THIS PROCESS ONLY" in warnings[0] and "--redis-url" in warnings[0]
        assert tenancy.mode == "in-process"
        assert isinstance(tenancy.meter.concurrency.store, LocalInFlight) and tenancy.meter.concurrency.limit == 5
    finally:
        await tenancy.aclose()
