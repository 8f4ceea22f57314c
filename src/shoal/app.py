"""``create_app()``: builds the services in the lifespan and mounts the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp

from shoal.api import admin, chat, embeddings, messages, models, responses
from shoal.api.chat.router import create_chat_completion
from shoal.api.edge import Edge
from shoal.api.embeddings.router import create_embedding
from shoal.api.messages.router import count_message_tokens, create_message
from shoal.api.openapi import build_openapi
from shoal.api.responses.router import create_response
from shoal.api.services import Services
from shoal.config import Settings
from shoal.console import install as install_console
from shoal.errors import install_error_handlers
from shoal.wiring.services import BackendFactory, build_services

log = logging.getLogger("shoal")


class ShoalAPI(FastAPI):
    """FastAPI with :class:`~shoal.api.edge.Edge` outside its own error, telemetry and body-limit layers.

    The edge renders the direct routes' errors itself, so the generation endpoints pass no
    layer they do not need; every other route goes through FastAPI's whole stack as usual.
    """

    edge: dict[str, Any] | None = None
    """``Edge`` options (``limit``, ``direct``), set before the app serves its first request."""

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack, behind the edge."""
        stack = super().build_middleware_stack()
        return stack if self.edge is None else Edge(stack, **self.edge)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document plus the directly called generation routes (built once)."""
        if self.openapi_schema is None:
            self.openapi_schema = build_openapi(self)
        return self.openapi_schema


def create_app(settings: Settings, backend_factory: BackendFactory | None = None,
               on_ready: Callable[[Services], None] | None = None) -> FastAPI:
    """The ASGI app. ``backend_factory`` builds (and loads) the backends; tests pass scripted ones."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            services, metrics = await build_services(settings, stack, backend_factory)
            app.state.metrics = metrics
            app.state.services = services
            # Renews this replica's background leases and fails any replica's expired ones (orphans).
            services.responses.open()
            if on_ready is not None:
                on_ready(services)
            yield

    # FastAPI's own OpenTelemetry hooks look up tracer and meter providers on every request;
    # Shoal's metrics are its Prometheus /metrics.
    app = ShoalAPI(title="Shoal", version="0.1.0", lifespan=lifespan,
                   telemetry={"tracing": False, "metrics": False, "logs": False})
    install_error_handlers(app)
    # The generation endpoints first: routes are matched in order.
    app.include_router(chat.router)
    app.include_router(responses.router)
    app.include_router(messages.router)
    app.include_router(embeddings.router)
    app.include_router(models.router)
    app.include_router(admin.router)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and per-backend status."""
        svc: Services = app.state.services
        return {"status": "ok", "models": [c.id for c in svc.pipeline.cards()]}

    @app.get("/ready")
    async def ready() -> Response:
        """Readiness: 200 when every model has a deployment whose circuit is closed, else 503 (also while draining)."""
        from shoal.metrics import ready as readiness

        if getattr(app.state, "draining", False):
            return JSONResponse({"status": "draining"}, status_code=503)
        svc: Services | None = getattr(app.state, "services", None)
        ok, detail = readiness(svc.pipeline.deployments) if svc is not None else (False, {})
        return JSONResponse({"status": "ready" if ok else "not_ready", **detail}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics, per model and deployment."""
        from shoal.metrics import CONTENT_TYPE

        return Response(app.state.metrics.render(), media_type=CONTENT_TYPE)

    install_console(app, settings)
    app.edge = {"limit": settings.max_body_bytes, "direct": {
        ("POST", "/v1/chat/completions"): create_chat_completion,
        ("POST", "/v1/responses"): create_response,
        ("POST", "/v1/messages"): create_message,
        ("POST", "/v1/messages/count_tokens"): count_message_tokens,
        ("POST", "/v1/embeddings"): create_embedding,
    }, "loopback_only": not settings.auth_enabled}
    return app
