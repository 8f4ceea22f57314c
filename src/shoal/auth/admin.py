"""The admin token: guards /admin/... (keys and usage); kept hashed, compared in constant time."""

from __future__ import annotations

from shoal.auth.keys import bearer_token, hash_key, same_hash
from shoal.errors import AuthenticationError, NotFoundError


class AdminAuth:
    """Checks the admin token. Model access keys are never admin tokens, and the admin token is no key."""

    def __init__(self, token: str | None) -> None:
        self._hash = hash_key(token) if token else None

    @property
    def enabled(self) -> bool:
        """Whether the admin API is on (an admin token is configured)."""
        return self._hash is not None

    def check(self, authorization: str | None, *, session: bool = False) -> None:
        """404 when the admin API is off; 401 unless ``authorization`` carries the admin token.

        ``session``: the caller already proved a console session (signed with the admin token, CSRF-checked).
        """
        if self._hash is None:
            raise NotFoundError("The admin API is disabled: start the server with --admin-token "
                                "(or SHOAL_ADMIN_TOKEN) to enable it.", code="admin_api_disabled")
        if session:
            return
        token = bearer_token(authorization)
        if not same_hash(hash_key(token), (self._hash,)):
            raise AuthenticationError("Incorrect admin token.", code="invalid_admin_token")
