"""``create_app()``: builds the services in the lifespan and mounts the routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.api import chat, models, responses
from shoal.auth.keys import StaticKeys
from shoal.backends.base import Backend
from shoal.config import Settings
from shoal.core.admission import Admission
from shoal.core.pipeline import Deployment, Pipeline
from shoal.errors import PayloadTooLargeError, error_response, install_error_handlers

log = logging.getLogger("shoal")

BackendFactory = Callable[[Settings], list[Backend]]


@dataclass
class Services:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    pipeline: Pipeline
    keys: StaticKeys


class BodyLimit:
    """Answer 413 for bodies over ``limit`` bytes, by header or by counting chunks."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLargeError(f"Request body is larger than the limit of {self.limit} bytes.")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_response(too_large)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large
            return message

        await self.app(scope, limited, send)


async def build_deployments(settings: Settings, backends: list[Backend]) -> list[Deployment]:
    """One deployment per served model, each with its backend's admission queue."""
    deployments = []
    for backend in backends:
        admission = Admission(backend.capacity, settings.max_queue)
        for card in backend.models():
            deployments.append(Deployment(card=card, backend=backend, admission=admission))
    return deployments


def create_app(settings: Settings, backend_factory: BackendFactory | None = None,
               on_ready: Callable[[Services], None] | None = None) -> FastAPI:
    """The ASGI app. ``backend_factory`` builds (and loads) the backends; tests pass scripted ones."""
    if backend_factory is None:
        from shoal.backends.local.factory import local_backends

        backend_factory = local_backends

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backends = await asyncio.to_thread(backend_factory, settings)
        pipeline = Pipeline(await build_deployments(settings, backends), prime_timeout=settings.prime_timeout)
        services = Services(settings=settings, pipeline=pipeline, keys=StaticKeys(settings.api_keys))
        app.state.services = services
        if on_ready is not None:
            on_ready(services)
        try:
            yield
        finally:
            await pipeline.aclose()

    app = FastAPI(title="Shoal", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(models.router)
    app.include_router(chat.router)
    app.include_router(responses.router)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and per-backend status."""
        svc: Services = app.state.services
        return {"status": "ok", "models": [c.id for c in svc.pipeline.cards()]}

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
