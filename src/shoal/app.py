"""``create_app()``: builds the services in the lifespan and mounts the routes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp

from shoal.api import admin, chat, messages, models, responses
from shoal.api.chat.router import create_chat_completion
from shoal.api.edge import Edge
from shoal.api.messages.router import count_message_tokens, create_message
from shoal.api.openapi import build_openapi
from shoal.api.responses.router import create_response
from shoal.api.responses.service import ResponsesService
from shoal.auth.keys import StaticKeys
from shoal.auth.tenancy import Tenancy, build_tenancy
from shoal.backends.base import Backend
from shoal.config import Settings
from shoal.console import install as install_console
from shoal.core.admission import Admission
from shoal.core.pipeline import Deployment, Pipeline
from shoal.errors import install_error_handlers
from shoal.storage.db import Database, default_url
from shoal.storage.responses import ResponseStore
from shoal.tools.web_search import provider_from_url

log = logging.getLogger("shoal")

BackendFactory = Callable[[Settings], list[Backend]]


@dataclass
class Services:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    pipeline: Pipeline
    keys: StaticKeys
    db: Database
    responses: ResponsesService
    tenancy: Tenancy


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


def instance_id() -> str:
    """This process's id in the rows it leases (host, pid and a random part: a restart is a new instance)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def build_deployments(settings: Settings, backends: list[Backend]) -> list[Deployment]:
    """One deployment per served model, each with its backend's admission queue."""
    deployments = []
    for backend in backends:
        admission = Admission(backend.capacity, settings.max_queue)
        for card in backend.models():
            deployments.append(Deployment(card=card, backend=backend, admission=admission,
                                          reserved_for=getattr(backend, "reserved_for", None)))
    return deployments


def create_app(settings: Settings, backend_factory: BackendFactory | None = None,
               on_ready: Callable[[Services], None] | None = None) -> FastAPI:
    """The ASGI app. ``backend_factory`` builds (and loads) the backends; tests pass scripted ones."""
    if backend_factory is None:
        from shoal.routing.build import catalog_backends

        backend_factory = catalog_backends

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url or default_url(settings.data_dir))
        static = StaticKeys(settings.api_keys)
        tenancy: Tenancy | None = None
        try:
            await db.prepare()
            tenancy = await build_tenancy(settings, db, static)
            store = ResponseStore(db, instance=instance_id(), lease_seconds=settings.response_lease_seconds)
            backends = await asyncio.to_thread(backend_factory, settings)
        except BaseException:
            if tenancy is not None:
                await tenancy.aclose()
            await db.aclose()
            raise
        assert tenancy is not None
        search = provider_from_url(settings.web_search_url)
        deployments = await build_deployments(settings, backends)
        tenancy.serve(deployments)
        from shoal.metrics import Metrics, UsageQueue
        from shoal.routing.build import router_specs

        metrics = Metrics(lambda: deployments)
        metrics.registry.register(UsageQueue(tenancy.usage))
        app.state.metrics = metrics
        try:
            pipeline = Pipeline(deployments, prime_timeout=settings.prime_timeout, hooks=tenancy.meter,
                                routers=router_specs(settings), retries=settings.retries,
                                deadline=settings.first_byte_deadline, observer=metrics)
        except BaseException:
            for backend in backends:
                await backend.aclose()
            await tenancy.aclose()
            await db.aclose()
            raise
        services = Services(settings=settings, pipeline=pipeline, keys=static, db=db,
                            responses=ResponsesService(pipeline, store, search=search), tenancy=tenancy)
        app.state.services = services
        # Renews this replica's background leases and fails any replica's expired ones (orphans).
        services.responses.open()
        if on_ready is not None:
            on_ready(services)
        try:
            yield
        finally:
            await services.responses.aclose()
            if search is not None:
                await search.aclose()
            await pipeline.aclose()
            await tenancy.aclose()
            await db.aclose()

    # FastAPI's own OpenTelemetry hooks look up tracer and meter providers on every request;
    # Shoal's metrics are its Prometheus /metrics.
    app = ShoalAPI(title="Shoal", version="0.1.0", lifespan=lifespan,
                   telemetry={"tracing": False, "metrics": False, "logs": False})
    install_error_handlers(app)
    # The generation endpoints first: routes are matched in order.
    app.include_router(chat.router)
    app.include_router(responses.router)
    app.include_router(messages.router)
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
    }, "loopback_only": not settings.auth_enabled}
    return app
