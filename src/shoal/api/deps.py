"""FastAPI dependencies: the app's services and authentication."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from shoal import sse
from shoal.core.context import RequestContext
from shoal.core.generation import Generation
from shoal.errors import InvalidRequestError
from shoal.protocol.common import WireModel

if TYPE_CHECKING:
    from shoal.api.services import Services

log = logging.getLogger("shoal.api")

W = TypeVar("W", bound=WireModel)


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

    Anthropic's SDKs send the key as ``x-api-key: <key>`` instead; it counts as
    ``Authorization: Bearer <key>`` (which wins when both are sent).
    """
    scope = request.scope
    # Read from the ASGI scope: building Starlette's Headers and State objects showed in the gateway's profile.
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
        if name == b"x-api-key" and authorization is None:
            authorization = "Bearer " + value.decode("latin-1").strip()
    state = scope.setdefault("state", {})
    if authorization is None and console_admin(request):
        state["context"] = RequestContext(owner=CONSOLE_OWNER, key_id=CONSOLE_OWNER, endpoint=scope["path"])
        return
    access = services(request).tenancy.access
    state["context"] = await access.authenticate(authorization, scope["path"])


def context(request: Request) -> RequestContext:
    """The authenticated caller of this request."""
    ctx = request.scope.get("state", {}).get("context")
    return ctx if isinstance(ctx, RequestContext) else RequestContext()


def owner(request: Request) -> str | None:
    """The authenticated caller's owner id (scopes stored responses)."""
    return context(request).owner


def log_ignored(body: WireModel, endpoint: str) -> None:
    """Name the fields Shoal ignored, as vLLM does, without failing the call."""
    ignored = body.ignored_fields()
    if ignored:
        log.debug("%s: ignoring unsupported fields %s", endpoint, ", ".join(ignored))


async def read_body(request: Request, schema: type[W]) -> W:
    """The request's JSON body validated as ``schema``; the same 400s as FastAPI's body parameters.

    Validating the raw bytes in pydantic's core skips FastAPI's decode-then-validate
    round (a third of the framework's cost on the generation endpoints).
    """
    try:
        raw = await request.body()
    except ClientDisconnect:
        # Nobody is left to answer; a plain 400 keeps it out of the unhandled-error log.
        raise InvalidRequestError("The client closed the connection before the request body ended.") from None
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        raise RequestValidationError(exc.errors(include_url=False, include_context=False), body=body) from None


def context_window(request: Request, model: str) -> int | None:
    """The context window (tokens) a request for ``model`` must fit in; None for a router, whose models differ.

    404 for a model the caller may not use, as the pipeline would answer.
    """
    pipeline = services(request).pipeline
    if pipeline.router.is_router(model):
        return None
    return pipeline.resolve(model, context(request)).card.context_length


def stream_response(request: Request, frames: AsyncIterator[bytes],
                    headers: dict[str, str] | None = None) -> StreamingResponse:
    """``frames`` as SSE with the server's keep-alive and write-stall timeout (one place for every stream)."""
    settings = services(request).settings
    return sse.sse_response(frames, headers=headers, keepalive=settings.keepalive_seconds,
                            write_timeout=settings.write_timeout_seconds)


async def closing(generation: Generation, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield ``frames`` and free the slot however the stream ends (done, error, disconnect)."""
    try:
        async for frame in frames:
            yield frame
    finally:
        await generation.aclose()
