"""ASGI middleware: every response carries the request context's headers (rate-limit state).

The auth dependency and the pipeline hooks put headers on
``request.state.context.headers``; this adds them to whatever response goes
out, success or error, JSON or stream, unless the response already set them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ContextHeaders:
    """Copy ``scope["state"]["context"].headers`` onto the response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                context = state.get("context") if isinstance(state, dict) else None
                extra = getattr(context, "headers", None)
                if extra:
                    headers = list(message.get("headers", ()))
                    present = {name.lower() for name, _ in headers}
                    for name, value in extra.items():
                        raw = name.lower().encode("latin-1")
                        if raw not in present:
                            headers.append((raw, str(value).encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)
