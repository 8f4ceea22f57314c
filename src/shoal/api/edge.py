"""The one ASGI layer every HTTP exchange passes: the body limit, the caller's headers, and the generation routes.

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

from shoal.errors import PayloadTooLargeError, error_response, response_for

Endpoint = Callable[[Request], Awaitable[Response]]


class Edge:
    """Body limit, context headers and the direct generation routes, in one layer."""

    def __init__(self, app: ASGIApp, limit: int, direct: Mapping[tuple[str, str], Endpoint] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.direct = dict(direct or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_response(self._too_large())(scope, receive, send)
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

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"Request body is larger than the limit of {self.limit} bytes.")


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
