"""Authenticating a request: static keys, managed keys (cached, revocable), scopes, auth on/off."""

from __future__ import annotations

import pytest

from shoal.auth.access import Access
from shoal.auth.counters import LocalCounters
from shoal.auth.keys import StaticKeys
from shoal.auth.manage import KeyManager, KeySpec
from shoal.auth.ratelimit import RateLimiter
from shoal.errors import AuthenticationError, RateLimitError
from shoal.storage.db import Database
from shoal.storage.keys import KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def access(db: Database, static: tuple[str, ...] = (), clock: Clock | None = None, **kw: object) -> Access:
    return Access(StaticKeys(static), KeyStore(db), RateLimiter(LocalCounters()), clock=clock or Clock(),
                  **kw)  # type: ignore[arg-type]


async def test_auth_off_without_any_key(db: Database) -> None:
    ctx = await access(db).authenticate(None, "/v1/models")
    assert ctx.owner is None and ctx.key is None and ctx.allowed_models is None
    assert ctx.endpoint == "/v1/models"


async def test_admin_token_turns_auth_on(db: Database) -> None:
    with pytest.raises(AuthenticationError) as info:
        await access(db, admin_enabled=True).authenticate(None)
    assert info.value.code == "missing_api_key"


async def test_static_keys_keep_working_unlimited(db: Database) -> None:
    await KeyManager(KeyStore(db)).create(KeySpec(name="m"))
    acc = access(db, static=("static-1",))
    ctx = await acc.authenticate("Bearer static-1")
    assert ctx.owner is not None and ctx.owner.startswith("static:") and ctx.key is None
    assert ctx.allowed_models is None and ctx.headers == {}
    with pytest.raises(AuthenticationError):
        await acc.authenticate("Bearer static-2")


async def test_first_managed_key_turns_auth_on(db: Database) -> None:
    clock = Clock()
    acc = access(db, clock=clock)
    assert (await acc.authenticate(None)).owner is None
    _, secret = await KeyManager(KeyStore(db)).create(KeySpec(name="m"))
    clock.now += 2.0  # the "any keys?" answer is cached like a key
    with pytest.raises(AuthenticationError):
        await acc.authenticate(None)
    ctx = await acc.authenticate(f"Bearer {secret}")
    assert ctx.key is not None and ctx.owner == ctx.key_id == ctx.key.id


async def test_managed_key_scope_resolves_aliases(db: Database) -> None:
    _, secret = await KeyManager(KeyStore(db)).create(KeySpec(name="m", models=("alias-a", "b")))
    acc = access(db, canonical={"alias-a": "model-a", "model-a": "model-a"}.get)
    ctx = await acc.authenticate(f"Bearer {secret}")
    assert ctx.allowed_models == frozenset({"model-a", "b"})
    assert ctx.may_use("model-a") and not ctx.may_use("c")


async def test_revocation_is_immediate_here_and_within_ttl_elsewhere(db: Database) -> None:
    manager = KeyManager(KeyStore(db))
    key, secret = await manager.create(KeySpec(name="m"))
    clock = Clock()
    here, there = access(db, clock=clock, ttl=2.0), access(db, clock=clock, ttl=2.0)
    await here.authenticate(f"Bearer {secret}")
    await there.authenticate(f"Bearer {secret}")
    await manager.revoke(key.id)
    here.forget(key.id)
    with pytest.raises(AuthenticationError) as info:
        await here.authenticate(f"Bearer {secret}")
    assert info.value.code == "revoked_api_key"
    await there.authenticate(f"Bearer {secret}")  # still cached on the other replica...
    clock.now += 2.0
    with pytest.raises(AuthenticationError):  # ...but not past the cache time
        await there.authenticate(f"Bearer {secret}")


async def test_rotation_kills_the_old_secret(db: Database) -> None:
    manager = KeyManager(KeyStore(db))
    key, old = await manager.create(KeySpec(name="m"))
    acc = access(db)
    await acc.authenticate(f"Bearer {old}")
    _, new = await manager.rotate(key.id)
    acc.forget(key.id)
    with pytest.raises(AuthenticationError):
        await acc.authenticate(f"Bearer {old}")
    assert (await acc.authenticate(f"Bearer {new}")).key_id == key.id


async def test_unknown_keys_are_not_cached(db: Database) -> None:
    acc = access(db, admin_enabled=True)
    with pytest.raises(AuthenticationError) as info:
        await acc.authenticate("Bearer sk-shoal-unknown")
    assert info.value.code == "invalid_api_key" and "sk-shoal-unknown" not in info.value.message
    assert len(acc._cache) == 0


async def test_requests_are_counted_against_rpm(db: Database) -> None:
    _, secret = await KeyManager(KeyStore(db)).create(KeySpec(name="m", rpm=2))
    acc = access(db)
    first = await acc.authenticate(f"Bearer {secret}")
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    await acc.authenticate(f"Bearer {secret}")
    with pytest.raises(RateLimitError) as info:
        await acc.authenticate(f"Bearer {secret}")
    assert info.value.status_code == 429 and int(info.value.headers["retry-after"]) >= 1
    assert info.value.headers["x-ratelimit-remaining-requests"] == "0"


async def test_many_requests_with_an_expired_key_share_one_lookup(db: Database) -> None:
    import asyncio

    manager = KeyManager(KeyStore(db))
    _, secret = await manager.create(KeySpec(name="busy"))
    store = KeyStore(db)
    lookups = 0
    real = store.by_hash

    async def counted(key_hash: str):  # type: ignore[no-untyped-def]
        nonlocal lookups
        lookups += 1
        await asyncio.sleep(0.05)  # a slow database: every request arrives while it runs
        return await real(key_hash)

    store.by_hash = counted  # type: ignore[method-assign]
    acc = Access(StaticKeys(()), store, RateLimiter(LocalCounters()), clock=Clock())
    contexts = await asyncio.gather(*(acc.authenticate(f"Bearer {secret}") for _ in range(20)))
    assert lookups == 1 and len({c.key_id for c in contexts}) == 1
