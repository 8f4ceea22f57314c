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


async def authenticated(request: Request) -> None:
    """Reject the request with 401 unless it carries a valid key (when keys are set), 429 past its rpm.

    The caller (static or managed key, its model scope and limits) is kept on
    ``request.state.context`` for the rest of the path.
    """
    access = services(request).tenancy.access
    request.state.context = await access.authenticate(request.headers.get("authorization"), request.url.path)


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
