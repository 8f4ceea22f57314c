"""ResponseStore on SQLite (and PostgreSQL): owner scoping, deletes, leases of background runs, sweeps."""

from __future__ import annotations

from pathlib import Path

from shoal.storage.db import Database, default_url
from shoal.storage.responses import ORPHANED, ResponseStore, StoredResponse


def record(rid: str, owner: str | None, status: str = "completed", background: bool = False) -> StoredResponse:
    return StoredResponse(id=rid, owner=owner, status=status, model="m", body={"id": rid, "status": status},
                          input_items=[{"id": "msg_1", "type": "message"}], conversation=[], background=background)


async def open_store(tmp_path: Path, instance: str = "node-a") -> ResponseStore:
    db = Database(default_url(tmp_path))
    await db.prepare()
    return ResponseStore(db, instance)


async def test_owner_scoping_and_delete(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.save(record("resp_1", "alice"))
    await store.save(record("resp_2", None))
    assert (await store.get("resp_1", "alice")) is not None
    assert await store.get("resp_1", "bob") is None
    assert await store.get("resp_1", None) is None
    assert (await store.get("resp_2", None)) is not None
    assert await store.delete("resp_1", "bob") is False
    assert await store.delete("resp_1", "alice") is True
    assert await store.get("resp_1", "alice") is None
    assert await store.delete("resp_2", None) is True
    await store.db.aclose()


async def test_save_replaces(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.save(record("resp_1", "a", status="queued", background=True))
    await store.save(record("resp_1", "a", status="completed", background=True))
    got = await store.get("resp_1", "a")
    assert got is not None and got.status == "completed" and got.background
    await store.db.aclose()


async def test_a_background_row_is_leased_and_renewed_only_while_active(database: Database) -> None:
    store = ResponseStore(database, "node-a", lease_seconds=30)
    await store.save(record("resp_run", "a", status="queued", background=True))
    await store.save(record("resp_done", "a", status="completed", background=True))
    assert await store.renew(["resp_run", "resp_done", "resp_gone"]) == {"resp_run"}
    assert await store.set_status("resp_run", "in_progress", was=("queued",)) is True
    assert await store.set_status("resp_run", "in_progress", was=("queued",)) is False
    assert await store.renew(["resp_run"]) == {"resp_run"}
    assert await store.sweep() == []  # the lease has 30 s to go


async def test_sweep_fails_only_rows_whose_lease_ran_out(database: Database) -> None:
    import asyncio

    dead = ResponseStore(database, "node-dead", lease_seconds=0.2)
    live = ResponseStore(database, "node-live", lease_seconds=0.2)
    await dead.save(record("resp_orphan", "a", status="in_progress", background=True))
    await live.save(record("resp_live", "a", status="in_progress", background=True))
    await dead.save(record("resp_done", "a", status="completed", background=True))
    await asyncio.sleep(0.3)
    assert await live.renew(["resp_live"]) == {"resp_live"}  # renewed just in time; the orphan was not
    assert await live.sweep() == ["resp_orphan"]
    assert await dead.sweep() == []  # another replica's sweep finds nothing left
    failed = await live.get("resp_orphan", "a")
    assert failed is not None and failed.status == "failed" and failed.body["status"] == "failed"
    assert failed.body["error"] == {"code": "server_error", "message": ORPHANED}
    assert (await live.get("resp_live", "a")).status == "in_progress"  # type: ignore[union-attr]
    assert (await live.get("resp_done", "a")).status == "completed"  # type: ignore[union-attr]
    # The orphan's process, back in touch, finds its row taken: it neither renews nor overwrites it.
    assert await dead.renew(["resp_orphan"]) == set()
    assert await dead.update_if_active(record("resp_orphan", "a", status="completed", background=True)) is False
    assert (await live.get("resp_orphan", "a")).status == "failed"  # type: ignore[union-attr]


async def test_the_runners_final_write_never_overwrites_a_cancel_or_undoes_a_delete(database: Database) -> None:
    store = ResponseStore(database, "node-a")
    await store.save(record("resp_1", "a", status="in_progress", background=True))
    await store.save(record("resp_2", "a", status="in_progress", background=True))
    assert await store.update_if_active(record("resp_1", "a", status="cancelled", background=True)) is True
    assert await store.update_if_active(record("resp_1", "a", status="completed", background=True)) is False
    assert (await store.get("resp_1", "a")).status == "cancelled"  # type: ignore[union-attr]
    assert await store.delete("resp_2", "a") is True
    assert await store.update_if_active(record("resp_2", "a", status="completed", background=True)) is False
    assert await store.get("resp_2", "a") is None


async def test_old_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    from alembic import command

    from shoal.storage.db import SchemaError, alembic_config

    db = Database(default_url(tmp_path))

    def to_first(conn):  # type: ignore[no-untyped-def]
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")

    async with db.engine.begin() as conn:
        await conn.run_sync(to_first)
    current, head = await db.revisions()
    if current == head:
        await db.aclose()
        return  # only one migration exists: nothing older to refuse
    try:
        await db.prepare()
        raise AssertionError("prepare() accepted an old schema")
    except SchemaError as exc:
        assert "shoal db upgrade" in str(exc)
    await db.upgrade()
    await db.prepare()
    await db.aclose()
