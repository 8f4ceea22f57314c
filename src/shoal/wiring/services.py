"""Builds (and closes) everything one app serves with: database, tenancy, backends, router, pipeline."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack

from shoal.api.responses.service import ResponsesService
from shoal.api.services import Services
from shoal.auth.keys import StaticKeys
from shoal.config import Settings
from shoal.core.admission import Admission
from shoal.core.backend import Backend
from shoal.core.deployment import Deployment
from shoal.core.pipeline import Pipeline
from shoal.metrics import Metrics, UsageQueue
from shoal.routing.discovery import Resolver
from shoal.routing.router import Router
from shoal.storage.db import Database, default_url
from shoal.storage.responses import ResponseStore
from shoal.tools.web_search import provider_from_url
from shoal.wiring.backends import balance_specs, catalog_backends, router_specs
from shoal.wiring.discovery import Discovery
from shoal.wiring.tenancy import build_tenancy

BackendFactory = Callable[[Settings], list[Backend]]
"""Builds (and loads) the backends; tests pass scripted ones."""


def instance_id() -> str:
    """This process's id in the rows it leases (host, pid and a random part: a restart is a new instance)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def build_deployments(settings: Settings, backends: list[Backend]) -> list[Deployment]:
    """One deployment per served model, each with its backend's admission queue."""
    deployments = []
    for backend in backends:
        admission = Admission(backend.capacity, settings.max_queue)
        for card in backend.models():
            deployments.append(Deployment(card=card, backend=backend, admission=admission,
                                          reserved_for=backend.reserved_for))
    return deployments


async def build_services(settings: Settings, stack: AsyncExitStack, backend_factory: BackendFactory | None = None,
                         resolver: Resolver | None = None) -> tuple[Services, Metrics]:
    """Everything the app serves with; ``stack`` closes it all, in reverse order, whatever fails midway.

    ``resolver`` resolves the catalog's ``discover`` names (tests pass their own).
    """
    db = Database(settings.database_url or default_url(settings.data_dir))
    stack.push_async_callback(db.aclose)
    await db.prepare()
    static = StaticKeys(settings.api_keys)
    tenancy = await build_tenancy(settings, db, static)
    stack.push_async_callback(tenancy.aclose)
    store = ResponseStore(db, instance=instance_id(), lease_seconds=settings.response_lease_seconds)
    backends = await asyncio.to_thread(backend_factory or catalog_backends, settings)
    for backend in backends:
        stack.push_async_callback(backend.aclose)
    search = provider_from_url(settings.web_search_url)
    if search is not None:
        stack.push_async_callback(search.aclose)
    deployments = build_deployments(settings, backends)
    router = Router(deployments, router_specs(settings), balancing=balance_specs(settings),
                    expected=Discovery.expected_cards(settings.catalog))
    # Replicated deployments (base_urls, discover) join the router as their replicas come and go.
    discovery = Discovery(settings.catalog, router, max_queue=settings.max_queue, resolver=resolver)
    stack.push_async_callback(discovery.aclose)
    await discovery.start()
    tenancy.serve(router.deployments)
    metrics = Metrics(lambda: router.deployments)
    metrics.registry.register(UsageQueue(tenancy.usage))
    pipeline = Pipeline(router, prime_timeout=settings.prime_timeout,
                        hooks=tenancy.meter, retries=settings.retries, deadline=settings.first_byte_deadline,
                        observer=metrics)
    responses = ResponsesService(pipeline, store, search=search)
    stack.push_async_callback(responses.aclose)
    services = Services(settings=settings, pipeline=pipeline, keys=static, db=db, responses=responses,
                        tenancy=tenancy, replicas=discovery)
    return services, metrics
