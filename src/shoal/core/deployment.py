"""A model served by one backend, and the routing seam the pipeline plans with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shoal.core.admission import Admission
from shoal.core.backend import Backend, ModelCard
from shoal.core.breaker import CircuitBreaker
from shoal.core.context import RequestContext
from shoal.core.operation import Operation


@dataclass
class Deployment:
    """A model served by one backend, with that backend's admission queue.

    ``name`` says which deployment served a request (``x-shoal-deployment``);
    ``breaker`` and ``ttft_ewma`` are its live health, used by the router.
    """

    card: ModelCard
    backend: Backend
    admission: Admission
    name: str = ""
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    ttft_ewma: float | None = None
    reserved_for: frozenset[str] | None = None
    """Key ids or names that may use this deployment (None = every caller)."""
    up: bool = True
    """False while its health probe fails (a replica): planning skips it until it answers again."""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.backend.name

    def admits(self, context: RequestContext) -> bool:
        """Whether the caller may use this deployment (a reserved one takes only its keys)."""
        if self.reserved_for is None:
            return True
        return bool(self.reserved_for & {context.key_id, getattr(context.key, "name", None)})

    def status(self) -> dict[str, Any] | None:
        """The backend's live mode and state (local models), or None."""
        found = self.backend.status()
        return None if found is None else {"name": self.name, **found}

    def serves(self, operation: Operation) -> bool:
        """Whether the backend serves this kind of operation at all."""
        return operation.kind in self.backend.operations

    def available(self) -> bool:
        """Whether planning may send it a request now: up, and its circuit not open."""
        return self.up and self.breaker.available()


@dataclass
class Plan:
    """The deployments to try for one request, best first."""

    model: str
    candidates: list[Deployment] = field(default_factory=list)


class Planner(Protocol):
    """Names to deployments (``shoal.routing.Router``): what the pipeline asks of routing."""

    @property
    def deployments(self) -> Sequence[Deployment]:
        """Every deployment, in configuration order."""
        ...

    def is_router(self, name: str) -> bool:
        """Whether ``name`` is a router (whose models' context windows differ), not a model."""
        ...

    def cards(self, context: RequestContext | None = None) -> list[ModelCard]:
        """Every served model and router the caller may use."""
        ...

    def resolve(self, model: str, context: RequestContext | None = None) -> Deployment:
        """The deployment ``model`` goes to first, or a 404."""
        ...

    def plan(self, request: Operation, context: RequestContext) -> Plan:
        """The candidates for ``request``, best first (raises 404/400/503 when there are none)."""
        ...
