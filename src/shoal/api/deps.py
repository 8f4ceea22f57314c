"""FastAPI dependencies: the app's services and authentication."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import Request

from shoal.core.context import RequestContext
from shoal.protocol.common import WireModel

if TYPE_CHECKING:
    from shoal.app import Services

log = logging.getLogger("shoal.api")


def services(request: Request) -> "Services":
    """The services built in the lifespan."""
    return request.app.state.services  # type: ignore[no-any-return]


CONSOLE_OWNER = "console:admin"
"""Owner and key id of calls made by a signed-in console admin (the playground without a pasted key)."""


def console_admin(request: Request) -> bool:
    """Whether a signed-in console admin makes this request (session cookie; CSRF-checked unless safe).

    Never true without an admin token: sessions are signed with it. 403 for a session failing the CSRF check.
    """
    sessions = getattr(request.app.state, "console_sessions", None)
    return sessions is not None and bool(sessions.authorize(request, request.method))


async def authenticated(request: Request) -> None:
    """Reject the request with 401 unless it carries a valid key (when keys are set), 429 past its rpm.

    The caller (static or managed key, its model scope and limits) is kept on
    ``request.state.context`` for the rest of the path. Without an ``Authorization``
    header, a console admin session counts as an unrestricted caller.
    """
    authorization = request.headers.get("authorization")
    if authorization is None and console_admin(request):
        request.state.context = RequestContext(owner=CONSOLE_OWNER, key_id=CONSOLE_OWNER, endpoint=request.url.path)
        return
    access = services(request).tenancy.access
    request.state.context = await access.authenticate(authorization, request.url.path)


def context(request: Request) -> RequestContext:
    """The authenticated caller of this request."""
    ctx = getattr(request.state, "context", None)
    return ctx if ctx is not None else RequestContext()


def owner(request: Request) -> str | None:
    """The authenticated caller's owner id (scopes stored responses)."""
    return context(request).owner


def log_ignored(body: WireModel, endpoint: str) -> None:
    """Name the fields Shoal ignored, as vLLM does, without failing the call."""
    ignored = body.ignored_fields()
    if ignored:
        log.debug("%s: ignoring unsupported fields %s", endpoint, ", ".join(ignored))
