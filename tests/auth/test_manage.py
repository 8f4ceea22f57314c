"""Key management: the secret is shown once, recognizable, never stored; validation; rotate and revoke."""

from __future__ import annotations

import logging

import pytest

from shoal.auth.keys import KEY_PREFIX, hash_key, new_key_id, new_secret
from shoal.auth.manage import KeyManager, KeySpec, split_models
from shoal.errors import InvalidRequestError, NotFoundError
from shoal.storage.db import Database
from shoal.storage.keys import KeyStore


def test_secret_format() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for s in secrets:
        assert s.startswith(KEY_PREFIX) and len(s) >= len(KEY_PREFIX) + 32
        assert all(c.isalnum() or c in "-_" for c in s)
    assert new_key_id().startswith("key_") and new_key_id() != new_key_id()


def test_split_models() -> None:
    assert split_models(None) is None
    assert split_models("a, b,,c") == ("a", "b", "c")
    assert split_models(["a", " b "]) == ("a", "b")


@pytest.mark.parametrize(("spec", "param"), [
    (KeySpec(name=""), "name"),
    (KeySpec(name="x" * 129), "name"),
    (KeySpec(name="n", models=()), "models"),
    (KeySpec(name="n", rpm=0), "rpm"),
    (KeySpec(name="n", tpm=-5), "tpm"),
    (KeySpec(name="n", budget_usd=-1), "budget_usd"),
    (KeySpec(name="n", budget_usd=float("nan")), "budget_usd"),
    (KeySpec(name="n", budget_usd=1, budget_period="week"), "budget_period"),
    (KeySpec(name="n", budget_period="day"), "budget_period"),
])
def test_invalid_specs(spec: KeySpec, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        spec.checked()
    assert info.value.param == param


def test_budget_period_defaults_to_month() -> None:
    assert KeySpec(name="n", budget_usd=5).checked().budget_period == "month"
    assert KeySpec(name=" n ", models=("a", "a", "b")).checked() == KeySpec(name="n", models=("a", "b"))


async def test_create_rotate_revoke(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shoal")
    store = KeyStore(db)
    manager = KeyManager(store)
    key, secret = await manager.create(KeySpec(name="ci", models=("m",), rpm=2, budget_usd=1.0))
    assert secret.startswith(KEY_PREFIX) and key.prefix == secret[:len(KEY_PREFIX) + 4]
    assert (await store.by_hash(hash_key(secret)))[0].id == key.id  # type: ignore[index]

    rotated, new = await manager.rotate(key.id)
    assert new != secret and rotated.id == key.id and rotated.rpm == 2 and rotated.budget_usd == 1.0
    assert await store.by_hash(hash_key(secret)) is None
    assert (await store.by_hash(hash_key(new)))[0].id == key.id  # type: ignore[index]

    revoked = await manager.revoke(key.id)
    assert not revoked.active
    with pytest.raises(InvalidRequestError, match="revoked"):
        await manager.rotate(key.id)
    with pytest.raises(NotFoundError):
        await manager.revoke("key_nope")
    with pytest.raises(NotFoundError):
        await manager.get("key_nope")
    logged = caplog.text
    assert key.id in logged
    for s in (secret, new):
        assert s not in logged and hash_key(s) not in logged
