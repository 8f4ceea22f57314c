"""ResponseStore against a real SQLite file: owner scoping, deletes, orphaned background runs."""

from __future__ import annotations

from pathlib import Path

from shoal.storage.db import Database, default_url
from shoal.storage.responses import ResponseStore, StoredResponse


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


async def test_fail_orphans_only_touches_this_instance(tmp_path: Path) -> None:
    mine = await open_store(tmp_path, "node-a")
    await mine.save(record("resp_run", "a", status="in_progress", background=True))
    await mine.save(record("resp_done", "a", status="completed", background=True))
    other = ResponseStore(mine.db, "node-b")
    await other.save(record("resp_other", "a", status="in_progress", background=True))
    assert await mine.fail_orphans() == 1
    failed = await mine.get("resp_run", "a")
    assert failed is not None and failed.status == "failed" and failed.body["status"] == "failed"
    assert "restarted" in failed.body["error"]["message"]
    assert (await mine.get("resp_done", "a")).status == "completed"  # type: ignore[union-attr]
    assert (await mine.get("resp_other", "a")).status == "in_progress"  # type: ignore[union-attr]
    await mine.db.aclose()


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
