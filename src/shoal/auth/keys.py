"""Model access keys: kept only as SHA-256 hashes and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from shoal.errors import AuthenticationError

KEY_PREFIX = "sk-shoal-"
"""Every managed key starts with this, so secret scanners and people recognize it."""
SHOWN_CHARS = 4
"""How many characters after the prefix listings show."""


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_secret() -> str:
    """A fresh managed key: the prefix and 43 URL-safe random characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A fresh key id (public: shown in listings, usage and logs)."""
    return "key_" + secrets.token_hex(8)


def display_prefix(secret: str) -> str:
    """The start of a key that listings show, enough to tell keys apart and nothing more."""
    return secret[:len(KEY_PREFIX) + SHOWN_CHARS]


def bearer_token(authorization: str | None) -> str:
    """The token of ``Bearer <token>``; 401 if it is missing or malformed."""
    if not authorization:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("Malformed Authorization header: expected 'Bearer <key>'.")
    return token


def same_hash(candidate: str, stored: Iterable[str]) -> bool:
    """Whether ``candidate`` equals one of ``stored``, comparing against every one in constant time."""
    matched = False
    for value in stored:
        matched |= hmac.compare_digest(candidate, value)
    return matched


class StaticKeys:
    """Keys given on the command line or in ``SHOAL_API_KEYS``.

    With no keys configured, auth is off and every request is let through (the
    server then only binds to loopback; see the CLI).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._hashes = tuple(hash_key(k) for k in keys if k)

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self._hashes)

    def match(self, token: str) -> str | None:
        """The owner id of ``token`` if it is a configured key, else None."""
        return self.match_hash(hash_key(token))

    def match_hash(self, candidate: str) -> str | None:
        """The owner id of the key whose hash is ``candidate``, else None."""
        if not self._hashes:
            return None
        # Compare against every key so timing does not tell which (or whether one) matched early.
        return "static:" + candidate[:24] if same_hash(candidate, self._hashes) else None

    def check(self, authorization: str | None) -> str | None:
        """Raise 401 unless ``authorization`` is ``Bearer <a configured key>``.

        Returns the key's owner id (what stored responses are scoped to), or
        None when auth is off.
        """
        if not self.enabled:
            return None
        owner = self.match(bearer_token(authorization))
        if owner is None:
            raise AuthenticationError("Incorrect API key provided.")
        return owner
