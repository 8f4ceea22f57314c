"""The key repository on SQLite and PostgreSQL: only hashes stored, lookups, revoke and re-key."""

from __future__ import annotations

import sqlalchemy as sa

from shoal.auth.keys import hash_key
from shoal.storage.db import Database
from shoal.storage.keys import ApiKey, KeyStore


def key(key_id: str = "key_1", **kw: object) -> ApiKey:
    return ApiKey(id=key_id, name=kw.pop("name", "alice"), prefix="sk-shoal-abcd", **kw)  # type: ignore[arg-type]


async def test_create_get_and_find_by_hash(database: Database) -> None:
    store = KeyStore(database)
    assert not await store.any()
    created = await store.create(key(models=("m1", "m2"), rpm=3, tpm=100, budget_usd=1.5, budget_period="day"),
                                 hash_key("sk-shoal-secret"))
    assert created.models == ("m1", "m2") and created.rpm == 3 and created.budget_usd == 1.5
    assert created.created_at > 0 and created.active
    assert await store.any()
    found = await store.by_hash(hash_key("sk-shoal-secret"))
    assert found is not None and found[0] == created and found[1] == hash_key("sk-shoal-secret")
    assert await store.by_hash(hash_key("sk-shoal-other")) is None
    assert await store.get("key_1") == created
    assert await store.get("key_nope") is None


async def test_only_the_hash_is_stored(database: Database) -> None:
    await KeyStore(database).create(key(), hash_key("sk-shoal-topsecret"))
    async with database.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM api_keys"))).all()
    dumped = repr(rows)
    assert "sk-shoal-topsecret" not in dumped
    assert hash_key("sk-shoal-topsecret") in dumped


async def test_list_revoke_and_replace_secret(database: Database) -> None:
    store = KeyStore(database)
    await store.create(key("key_a", name="a"), hash_key("s-a"))
    await store.create(key("key_b", name="b"), hash_key("s-b"))
    assert [k.id for k in await store.list()] == ["key_a", "key_b"]

    rotated = await store.replace_secret("key_a", "sk-shoal-new1", hash_key("s-a2"))
    assert rotated is not None and rotated.prefix == "sk-shoal-new1" and rotated.rotated_at is not None
    assert await store.by_hash(hash_key("s-a")) is None
    assert (await store.by_hash(hash_key("s-a2")))[0].id == "key_a"  # type: ignore[index]

    revoked = await store.revoke("key_b")
    assert revoked is not None and not revoked.active
    again = await store.revoke("key_b")
    assert again is not None and again.revoked_at == revoked.revoked_at  # idempotent
    assert await store.revoke("key_nope") is None
    assert await store.replace_secret("key_b", "p", hash_key("s-b2")) is None  # revoked keys are not re-keyed
    assert [k.id for k in await store.list(include_revoked=False)] == ["key_a"]
    assert await store.any()  # revoked keys still count: auth must not switch off


def test_public_form_has_no_secret_material() -> None:
    public = key(models=("m",), budget_usd=2.0, budget_period="month").public()
    assert public["status"] == "active" and public["prefix"] == "sk-shoal-abcd"
    assert set(public) >= {"id", "name", "models", "rpm", "tpm", "budget_usd", "budget_period", "created_at"}
    assert not any("hash" in k for k in public)
