"""What a request handler reaches: the services the wiring package builds once per app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shoal.api.responses.service import ResponsesService
from shoal.auth.access import Access
from shoal.auth.admin import AdminAuth
from shoal.auth.keys import StaticKeys
from shoal.auth.manage import KeyManager
from shoal.config import Settings
from shoal.core.deployment import Deployment
from shoal.core.pipeline import Pipeline
from shoal.routing.discovery import ReplicaControl
from shoal.storage.db import Database
from shoal.storage.usage import UsageStore
from shoal.usage.meter import Meter


@dataclass
class Tenancy:
    """The services behind keys, limits and usage, and the Redis client they share (if any)."""

    access: Access
    keys: KeyManager
    usage: UsageStore
    meter: Meter
    admin: AdminAuth
    redis: Any = None

    @property
    def mode(self) -> str:
        """Where limits are kept: ``redis`` (shared by replicas) or ``in-process``."""
        return "redis" if self.redis is not None else "in-process"

    def serve(self, deployments: Sequence[Deployment]) -> None:
        """Learn the served models, so a key scoped to an alias covers the model behind it."""
        names: dict[str, str] = {}
        for dep in deployments:
            for name in (dep.card.id, *dep.card.aliases):
                names.setdefault(name, dep.card.id)
        self.access.canonical = names.get

    async def aclose(self) -> None:
        """Settle what is pending, write the queued usage records; close the Redis connections."""
        try:
            await self.meter.aclose()
            await self.usage.aclose()
        finally:
            if self.redis is not None:
                await self.redis.aclose()


@dataclass
class Services:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    pipeline: Pipeline
    keys: StaticKeys
    db: Database
    responses: ResponsesService
    tenancy: Tenancy
    replicas: ReplicaControl | None = None
    """Replicas of upstream deployments, changed at run time through the admin API."""
