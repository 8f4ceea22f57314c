"""Model access keys: kept only as SHA-256 hashes and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from shoal.errors import AuthenticationError


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


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

    def check(self, authorization: str | None) -> str | None:
        """Raise 401 unless ``authorization`` is ``Bearer <a configured key>``.

        Returns the key's owner id (what stored responses are scoped to), or
        None when auth is off.
        """
        if not self.enabled:
            return None
        if not authorization:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("Malformed Authorization header: expected 'Bearer <key>'.")
        candidate = hash_key(token)
        # Compare against every key so timing does not tell which (or whether one) matched early.
        matched = False
        for stored in self._hashes:
            matched |= hmac.compare_digest(candidate, stored)
        if not matched:
            raise AuthenticationError("Incorrect API key provided.")
        return "static:" + candidate[:24]
