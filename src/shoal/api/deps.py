"""FastAPI dependencies: the app's services and authentication."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import Request

from shoal.protocol.common import WireModel

if TYPE_CHECKING:
    from shoal.app import Services

log = logging.getLogger("shoal.api")


def services(request: Request) -> "Services":
    """The services built in the lifespan."""
    return request.app.state.services  # type: ignore[no-any-return]


async def authenticated(request: Request) -> None:
    """Reject the request with 401 unless it carries a valid key (when keys are set).

    The caller's owner id is kept on ``request.state.owner`` (None with auth off).
    """
    request.state.owner = services(request).keys.check(request.headers.get("authorization"))


def owner(request: Request) -> str | None:
    """The authenticated caller's owner id."""
    return getattr(request.state, "owner", None)


def log_ignored(body: WireModel, endpoint: str) -> None:
    """Name the fields Shoal ignored, as vLLM does, without failing the call."""
    ignored = body.ignored_fields()
    if ignored:
        log.debug("%s: ignoring unsupported fields %s", endpoint, ", ".join(ignored))
