"""The one ASGI layer every HTTP exchange passes: the request checks, the caller's headers, the generation routes.

* With auth off, only loopback ``Host`` names are answered (421 otherwise): a web page the
  user visits can point a DNS name it controls at 127.0.0.1 ("DNS rebinding") and would
  otherwise read every answer. With auth on, the key is the guard.
* A POST (PUT, PATCH) body must be ``application/json`` (415 otherwise): a web page may send
  ``text/plain`` to 127.0.0.1 without asking the browser first, never ``application/json``.
  A body-less POST needs no type (the console's revoke and rotate send none).
* Bodies over the limit get 413, by ``content-length`` or by counting the chunks.
* The auth dependency and the pipeline hooks put headers (rate-limit state, the
  deployment) on ``scope["state"]["context"].headers``; every response carries
  them, success or error, JSON or stream, unless it set them itself.
* ``POST /v1/chat/completions`` and ``POST /v1/responses`` are called here,
  straight from the edge. They are a gateway's hot path, and FastAPI's router,
  exception and exit-stack layers cost more than everything Shoal does to relay a
  short answer. The endpoints are the same functions the routers register, and
  their errors go through the same mapping (:func:`shoal.errors.response_for`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.errors import (
    MisdirectedRequestError,
    PayloadTooLargeError,
    ShoalError,
    UnsupportedMediaTypeError,
    error_response,
    response_for,
)

Endpoint = Callable[[Request], Awaitable[Response]]

LOOPBACK_NAMES = frozenset((b"localhost", b"127.0.0.1", b"[::1]"))
"""``Host`` names (without the port) answered while auth is off."""
BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
JSON = b"application/json"


class Edge:
    """Request checks, context headers and the direct generation routes, in one layer.

    ``loopback_only``: answer only requests whose ``Host`` is a loopback name (set while auth is off).
    """

    def __init__(self, app: ASGIApp, limit: int, direct: Mapping[tuple[str, str], Endpoint] | None = None,
                 loopback_only: bool = False) -> None:
        self.app = app
        self.limit = limit
        self.direct = dict(direct or {})
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._refused(scope)
        if refused is not None:
            await error_response(refused)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # FastAPI turns anything but an HTTPException raised while reading into a 400.
                    raise StarletteHTTPException(413, self._too_large().message)
            return message

        endpoint = self.direct.get((scope["method"], scope["path"]))
        if endpoint is None:
            await self.app(scope, limited, self._completing(state, send))
            return
        try:
            response = await endpoint(Request(scope, limited))
        except Exception as exc:  # noqa: BLE001 - rendered exactly as the app's exception handlers would
            response = response_for(exc)
        # The response exists before it starts: its headers are completed here, once, rather than by
        # wrapping every message it sends.
        extra = _context_headers(state)
        if extra:
            _add_missing(response.raw_headers, extra)
        await response(scope, limited, send)

    @staticmethod
    def _completing(state: object, send: Send) -> Send:
        """``send``, completing the headers of the response it starts with the context's headers."""
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = _context_headers(state)
                if extra:
                    headers = list(message.get("headers", ()))
                    _add_missing(headers, extra)
                    message = {**message, "headers": headers}
            await send(message)
        return sending

    def _refused(self, scope: Scope) -> ShoalError | None:
        """The error a request gets before anything reads it: wrong host, body too large or not JSON."""
        host = media = None
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"host":
                host = value
            elif name == b"content-type":
                media = value
            elif name == b"transfer-encoding":
                length = 1  # a body of unknown length: it counts as one
        # No Host at all is no browser's request (every browser sends one), so it is let through.
        if self.loopback_only and host is not None and _host_name(host) not in LOOPBACK_NAMES:
            return MisdirectedRequestError(
                f"This server answers only for localhost, 127.0.0.1 and [::1] while auth is off, not for "
                f"{host.decode('latin-1')!r}. Use one of those names, or start it with API keys.")
        if length > self.limit:
            return self._too_large()
        if scope["method"] in BODY_METHODS and (media is not None or length > 0) and (
                media is None or media.split(b";", 1)[0].strip().lower() != JSON):
            shown = "none" if media is None else repr(media.decode("latin-1"))
            return UnsupportedMediaTypeError(
                f"The request body must be JSON, sent with 'Content-Type: application/json' (got {shown}).")
        return None

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"Request body is larger than the limit of {self.limit} bytes.")


def _host_name(host: bytes) -> bytes:
    """The name of a ``Host`` header, without its port (``[::1]:8000`` -> ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith(b"["):
        return host[:host.find(b"]") + 1]
    return host.split(b":", 1)[0]


def _context_headers(state: object) -> Mapping[str, object] | None:
    """The headers the request's context asks every response to carry (rate limits, deployment)."""
    context = state.get("context") if isinstance(state, dict) else None
    return getattr(context, "headers", None)


def _add_missing(headers: list[tuple[bytes, bytes]], extra: Mapping[str, object]) -> None:
    """Append each of ``extra`` that ``headers`` do not set themselves (names compared without case)."""
    present = {name.lower() for name, _ in headers}
    for name, value in extra.items():
        raw = name.lower().encode("latin-1")
        if raw not in present:
            headers.append((raw, str(value).encode("latin-1")))
