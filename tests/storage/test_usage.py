"""The usage repository on SQLite and PostgreSQL: records, spend per key and period, summaries."""

from __future__ import annotations

import pytest

from shoal.storage.db import Database
from shoal.storage.usage import UsageRecord, UsageStore, utc_day

DAY1 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def rec(key: str | None, model: str = "m", status: str = "completed", cost: float = 0.01,
        ts: float = DAY1 + 60, **kw: object) -> UsageRecord:
    return UsageRecord(key_id=key, model=model, deployment="local:" + model, endpoint="/v1/chat/completions",
                       status=status, input_tokens=10, cached_tokens=4, output_tokens=5, reasoning_tokens=1,
                       ttft_ms=kw.pop("ttft_ms", 20.0), latency_ms=100.0, cost_usd=cost, ts=ts)  # type: ignore[arg-type]


def test_utc_day() -> None:
    assert utc_day(DAY1) == "2026-01-01"
    assert utc_day(DAY1 - 1) == "2025-12-31"


async def test_spend_per_key_since(database: Database) -> None:
    store = UsageStore(database)
    assert await store.spend("key_a", 0) == 0.0
    await store.add(rec("key_a", cost=0.25, ts=DAY1 - 10))
    await store.add(rec("key_a", cost=0.5))
    await store.add(rec("key_a", cost=0.125, status="failed"))
    await store.add(rec("key_b", cost=7.0))
    assert await store.spend("key_a", DAY1) == pytest.approx(0.625)
    assert await store.spend("key_a", 0) == pytest.approx(0.875)
    assert await store.spend("key_b", DAY1) == pytest.approx(7.0)


async def test_records_newest_first(database: Database) -> None:
    store = UsageStore(database)
    for i in range(3):
        await store.add(rec("key_a", cost=i, ts=DAY1 + i))
    await store.add(rec(None, ts=DAY1 + 10))
    records = await store.records(key_id="key_a")
    assert [r.cost_usd for r in records] == [2, 1, 0]
    assert records[0].input_tokens == 10 and records[0].cached_tokens == 4 and records[0].reasoning_tokens == 1
    assert records[0].deployment == "local:m" and records[0].endpoint == "/v1/chat/completions"
    assert len(await store.records(limit=2)) == 2
    assert [r.ts for r in await store.records(since=DAY1 + 2)] == [DAY1 + 10, DAY1 + 2]


async def test_summary_by_key_model_and_day(database: Database) -> None:
    store = UsageStore(database)
    await store.add(rec("key_a", model="m1", cost=0.5))
    await store.add(rec("key_a", model="m2", cost=0.25, status="failed", ttft_ms=None))
    await store.add(rec("key_b", model="m1", cost=1.0, ts=DAY1 + 86400))
    await store.add(rec(None, model="m1", cost=0.0, status="rejected"))

    by_key = {r["group"]: r for r in await store.summary("key")}
    assert set(by_key) == {None, "key_a", "key_b"}
    a = by_key["key_a"]
    assert a["requests"] == 2 and a["failed"] == 1 and a["input_tokens"] == 20 and a["output_tokens"] == 10
    assert a["cached_tokens"] == 8 and a["reasoning_tokens"] == 2
    assert a["cost_usd"] == pytest.approx(0.75) and a["avg_ttft_ms"] == 20.0 and a["avg_latency_ms"] == 100.0
    assert by_key[None]["failed"] == 1

    by_model = {r["group"]: r["requests"] for r in await store.summary("model")}
    assert by_model == {"m1": 3, "m2": 1}
    by_day = {r["group"]: r["cost_usd"] for r in await store.summary("day")}
    assert by_day == {"2026-01-01": pytest.approx(0.75), "2026-01-02": pytest.approx(1.0)}
    assert [r["group"] for r in await store.summary("day", since=DAY1 + 86400)] == ["2026-01-02"]
    assert [r["group"] for r in await store.summary("key", key_id="key_b")] == ["key_b"]


async def test_closing_while_a_batch_is_being_written_loses_nothing(database: Database) -> None:
    """aclose() during a batched write waits for it (a cancelled write once left SQLite locked)."""
    import asyncio

    store = UsageStore(database, flush_seconds=0.0, max_batch=50)
    for i in range(400):
        store.queue(rec("key_a", cost=0.001, ts=DAY1 + i))
    await asyncio.sleep(0.005)  # the flusher is now inside its batches
    for i in range(400, 450):
        store.queue(rec("key_a", cost=0.001, ts=DAY1 + i))
    await store.aclose()
    assert len(await store.records(key_id="key_a", limit=1000)) == 450


async def test_one_queued_batch_across_midnight_keeps_each_rows_day_and_values(database: Database) -> None:
    store = UsageStore(database)
    # Queued with no await between: one batch.
    store.queue(rec("key_a", cost=0.5, ts=DAY1 - 1))
    store.queue(rec("key_a", cost=0.25, ts=DAY1 + 1, ttft_ms=None))
    store.queue(rec(None, model="m2", cost=1.0, ts=DAY1 + 86400 + 5))
    await store.flush()
    by_day = {r["group"]: r["cost_usd"] for r in await store.summary("day")}
    assert by_day == {"2025-12-31": pytest.approx(0.5), "2026-01-01": pytest.approx(0.25),
                      "2026-01-02": pytest.approx(1.0)}
    newest = await store.records(limit=3)
    assert [(r.key_id, r.model, r.ttft_ms) for r in newest] == [(None, "m2", 20.0), ("key_a", "m", None),
                                                                ("key_a", "m", 20.0)]
    assert newest[1].ts == DAY1 + 1 and newest[1].latency_ms == 100.0 and newest[1].cached_tokens == 4
    await store.aclose()


# -- a database that fails for a while ------------------------------------------------------------

async def stored_ts(url: str) -> list[float]:
    """Every stored row's ``ts``, read over a connection of its own."""
    from sqlalchemy import select

    from shoal.storage.tables import UsageRow

    db = Database(url)
    try:
        async with db.sessions() as session:
            return sorted((await session.execute(select(UsageRow.ts))).scalars().all())
    finally:
        await db.aclose()


async def test_rows_queued_through_a_three_second_outage_are_all_written_once(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL behind a relay that is cut for 3 s: every row lands, none twice, nothing dropped."""
    import asyncio

    from tests.services import TcpProxy

    proxy = await TcpProxy(postgres_url).start()
    db = Database(proxy.url(postgres_url))
    await db.prepare()
    store = UsageStore(db, flush_seconds=0.01, retry_seconds=0.05, max_retry_seconds=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    queued = 0
    cut = restored = False
    try:
        while (elapsed := loop.time() - started) < 5.0 and queued < 2000:  # bounded in time and count
            if not cut and elapsed > 0.5:
                await proxy.cut()
                cut = True
            if cut and not restored and elapsed > 3.5:
                await proxy.start()
                restored = True
            store.queue(rec("key_a", cost=0.001, ts=DAY1 + queued))
            queued += 1
            await asyncio.sleep(0.005)
        assert restored
        await store.aclose()
    finally:
        await db.aclose()
        await proxy.aclose()
    assert await stored_ts(postgres_url) == [DAY1 + i for i in range(queued)]
    assert store.dropped == 0
    assert any("could not write" in r.message and r.levelname == "WARNING" for r in caplog.records)


async def test_a_batch_whose_commit_landed_unseen_is_not_written_twice(database: Database) -> None:
    """The commit succeeds but its acknowledgement is lost: the retry must skip the rows already there."""
    store = UsageStore(database)
    write = store._write
    calls = 0

    async def lost_ack(batch: list[UsageRecord]) -> None:
        nonlocal calls
        calls += 1
        await write(batch)
        if calls == 1:
            raise ConnectionResetError("connection lost before the COMMIT was acknowledged")

    store._write = lost_ack  # type: ignore[method-assign]
    for i in range(5):
        store.queue(rec("key_a", ts=DAY1 + i))
    with pytest.raises(ConnectionResetError):
        await store.flush()
    assert store.pending == 5
    await store.flush()
    assert [r.ts for r in await store.records(limit=100)] == [DAY1 + i for i in range(4, -1, -1)]
    await store.aclose()


async def test_a_full_queue_drops_its_oldest_rows_counted_and_logged(postgres_url: str,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from tests.services import TcpProxy

    proxy = await TcpProxy(postgres_url).start()
    db = Database(proxy.url(postgres_url))
    await db.prepare()
    store = UsageStore(db, flush_seconds=0.0, max_pending=10, retry_seconds=0.05, max_retry_seconds=0.1)
    try:
        await proxy.cut()
        for i in range(25):
            store.queue(rec("key_a", ts=DAY1 + i))
        assert store.pending == 10 and store.dropped == 15
        await proxy.start()
        await store.aclose()
    finally:
        await db.aclose()
        await proxy.aclose()
    assert await stored_ts(postgres_url) == [DAY1 + i for i in range(15, 25)]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("DROPPED 15 usage row(s)" in m for m in errors), errors


async def test_rows_still_unwritable_at_shutdown_are_dropped_after_close_seconds(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from tests.services import TcpProxy

    proxy = await TcpProxy(postgres_url).start()
    db = Database(proxy.url(postgres_url))
    await db.prepare()
    store = UsageStore(db, flush_seconds=0.0, retry_seconds=0.05, max_retry_seconds=0.1, close_seconds=0.5)
    try:
        await proxy.cut()
        for i in range(7):
            store.queue(rec("key_a", ts=DAY1 + i))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(store.aclose(), 10)
        assert loop.time() - started < 5
    finally:
        await db.aclose()
        await proxy.aclose()
    assert store.dropped == 7 and store.pending == 0
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("DROPPED 7 usage row(s)" in m and "shutdown" in m for m in errors), errors
