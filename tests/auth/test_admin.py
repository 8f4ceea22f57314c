"""The admin token: off without one, constant-time match, keys are not admin tokens."""

from __future__ import annotations

import pytest

from shoal.auth.admin import AdminAuth
from shoal.errors import AuthenticationError, NotFoundError


def test_disabled_without_token() -> None:
    admin = AdminAuth(None)
    assert not admin.enabled
    with pytest.raises(NotFoundError, match="admin-token"):
        admin.check("Bearer anything")


def test_checks_the_token() -> None:
    admin = AdminAuth("adm-secret")
    assert "adm-secret" not in repr(vars(admin))
    admin.check("Bearer adm-secret")
    for header in (None, "Bearer nope", "Bearer adm-secretx", "adm-secret"):
        with pytest.raises(AuthenticationError):
            admin.check(header)
