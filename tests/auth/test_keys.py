"""Static model access keys."""

from __future__ import annotations

import pytest

from shoal.auth.keys import StaticKeys, hash_key
from shoal.errors import AuthenticationError


def test_auth_off_lets_everything_through() -> None:
    keys = StaticKeys([])
    assert not keys.enabled
    assert keys.check(None) is None
    assert keys.check("Bearer anything") is None
    assert not StaticKeys(["", ""]).enabled  # empty keys do not count


def test_keys_are_kept_hashed() -> None:
    keys = StaticKeys(["secret-key"])
    assert "secret-key" not in repr(vars(keys))
    assert hash_key("secret-key") in vars(keys)["_hashes"]
    assert len(hash_key("x")) == 64


@pytest.mark.parametrize("header", ["Bearer k1", "bearer k2", "BEARER   k1  "])
def test_valid_keys(header: str) -> None:
    owner = StaticKeys(["k1", "k2"]).check(header)
    assert owner is not None and "k1" not in owner and "k2" not in owner


def test_match_by_hash_agrees_with_match_by_token() -> None:
    keys = StaticKeys(["k1", "k2"])
    assert keys.match_hash(hash_key("k1")) == keys.match("k1") is not None
    assert keys.match_hash(hash_key("k3")) is None
    assert StaticKeys([]).match_hash(hash_key("k1")) is None


def test_owner_is_stable_per_key_and_distinct() -> None:
    keys = StaticKeys(["k1", "k2"])
    assert keys.check("Bearer k1") == keys.check("bearer k1")
    assert keys.check("Bearer k1") != keys.check("Bearer k2")


@pytest.mark.parametrize(("header", "code"), [
    (None, "missing_api_key"),
    ("", "missing_api_key"),
    ("Bearer", "invalid_api_key"),
    ("Bearer ", "invalid_api_key"),
    ("k1", "invalid_api_key"),
    ("Basic k1", "invalid_api_key"),
    ("Bearer k3", "invalid_api_key"),
    ("Bearer k1x", "invalid_api_key"),
    ("Bearer K1", "invalid_api_key"),
])
def test_rejected(header: str | None, code: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        StaticKeys(["k1", "k2"]).check(header)
    assert info.value.status_code == 401
    assert info.value.code == code
    assert "k1" not in info.value.message and "k2" not in info.value.message
