"""Replicas that come and go: builds their backends, joins them to the router, probes them, drains them.

:class:`ReplicaSet` is one replicated upstream deployment of a catalog model (``base_urls``,
``discover``, or replicas added through the admin API). Each replica is a :class:`Deployment`
of its own (own backend, admission queue and breaker), named ``<model>/<host:port>``. A set
re-resolves its DNS name every ``interval_seconds`` and probes its replicas every
``health_check.interval_seconds``; a replica whose probe fails is marked down (planning skips
it) and back up when it answers. A removed replica takes no new request; its requests in
flight finish (at most its ``timeouts.total``), then its backend is closed.

:class:`Discovery` holds every set of the app; ``wiring/services.py`` starts it and closes it
with the app's lifespan. Which URLs a set should have is decided in ``routing/discovery.py``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp

from shoal.core.admission import Admission
from shoal.core.backend import ModelCard
from shoal.core.deployment import Deployment
from shoal.errors import ConflictError, InvalidRequestError, ModelNotFoundError, NotFoundError
from shoal.routing.discovery import (
    Health,
    Membership,
    Probe,
    Resolver,
    address_url,
    host_port,
    normalize_url,
    reconcile,
)
from shoal.routing.router import Router
from shoal.wiring.backends import upstream_backend

log = logging.getLogger("shoal.discovery")

DRAIN_GRACE_SECONDS = 1.0
"""A request planned just before its replica left may take its slot only now: wait that long at least."""
DRAIN_POLL_SECONDS = 0.1


async def resolve_dns(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA records), through the loop's ``getaddrinfo``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class HttpProbe:
    """``GET url`` with a short timeout on one pooled session: up when anything below 500 answers.

    A 401 or 404 still says the server is there (a probe sends no key; not every server has ``/models``).
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, url: str, timeout: float) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout),
                                         allow_redirects=False) as response:
                return response.status < 500
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def aclose(self) -> None:
        """Close the probe's connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class Replica:
    """One member of a set: its deployment and its health."""

    def __init__(self, url: str, deployment: Deployment, health: Health) -> None:
        self.url = url
        self.deployment = deployment
        self.health = health


class ReplicaSet:
    """One replicated upstream deployment (``spec``, the ``index``-th of catalog ``entry``)."""

    def __init__(self, entry: Any, spec: Any, index: int, router: Router, *, max_queue: int,
                 resolver: Resolver, probe: Probe) -> None:
        self.entry, self.spec, self.index = entry, spec, index
        self.router = router
        self.max_queue = max_queue
        self.resolver = resolver
        self.probe = probe
        self.membership = Membership(spec.base_urls)
        self.replicas: dict[str, Replica] = {}
        self._draining: dict[asyncio.Task[None], Deployment] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self.check = spec.health_check

    @property
    def label(self) -> str:
        """How logs and names call this set: the spec's name, else the model id."""
        return str(self.spec.name or self.entry.id)

    def card(self) -> ModelCard:
        """The card every replica serves."""
        return self.entry.card(self.spec.capabilities, {"upstream": self.spec.type})

    async def start(self) -> None:
        """Resolve once, join the first replicas, then keep resolving and probing in the background."""
        if self.spec.discover is not None:
            await self.refresh()
        await self.sync()
        self.watch()

    def watch(self) -> None:
        """Start the background tasks: re-resolving the DNS name (if any) and probing the replicas."""
        if self._loops:
            return
        if self.spec.discover is not None:
            self._loops.append(asyncio.create_task(self._dns_loop(), name=f"dns {self.label}"))
        self._loops.append(asyncio.create_task(self._health_loop(), name=f"health {self.label}"))

    async def refresh(self) -> None:
        """Resolve the DNS name again; on failure keep the replicas we have (the probes judge them)."""
        found = self.spec.discover
        try:
            async with asyncio.timeout(max(1.0, min(found.interval_seconds, 10.0))):
                addresses = await self.resolver(found.dns, found.port)
        except (OSError, TimeoutError) as exc:
            log.warning("%s: resolving %s failed (%s); keeping %d replica(s)", self.label, found.dns,
                        type(exc).__name__, len(self.replicas))
            return
        self.membership.discover(address_url(found.scheme, a, found.port, found.path) for a in addresses)

    async def sync(self) -> None:
        """Start the replicas the membership wants and stop the ones it no longer does."""
        async with self._lock:
            start, stop = reconcile(self.replicas, self.membership.desired())
            for url in stop:
                self._leave(url)
            joined = await asyncio.gather(*(self._build(url) for url in start))
            for replica in joined:
                self.replicas[replica.url] = replica
                self.router.add(replica.deployment)
                log.info("%s: replica %s joined (%s)", self.label, replica.deployment.name,
                         "up" if replica.deployment.up else "down until its probe answers")

    async def _build(self, url: str) -> Replica:
        """The replica's backend and deployment, probed once so a dead one joins as down."""
        name = f"{self.label}/{host_port(url)}"
        backend = upstream_backend(self.entry, self.spec, self.index, base_url=url, name=name)
        admission = Admission(backend.capacity, self.max_queue)
        card = backend.models()[0]
        dep = Deployment(card=card, backend=backend, admission=admission, reserved_for=backend.reserved_for)
        up = await self.probe(self._probe_url(url), self.check.timeout_seconds)
        dep.up = up
        return Replica(url, dep, Health(self.check.unhealthy_after, self.check.healthy_after, up=up))

    def _probe_url(self, url: str) -> str:
        return url.rstrip("/") + "/" + self.check.path.lstrip("/")

    def _leave(self, url: str) -> None:
        replica = self.replicas.pop(url)
        dep = replica.deployment
        self.router.remove(dep)
        task = asyncio.create_task(self._drain(dep), name=f"drain {dep.name}")
        self._draining[task] = dep
        task.add_done_callback(lambda t: self._draining.pop(t, None))
        log.info("%s: replica %s left; draining %d request(s)", self.label, dep.name,
                 dep.admission.running + dep.admission.queued)

    async def _drain(self, dep: Deployment) -> None:
        """Close ``dep``'s backend once its requests in flight are done (bounded by ``timeouts.total``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_GRACE_SECONDS + self.spec.timeouts.total
        await asyncio.sleep(DRAIN_GRACE_SECONDS)
        while dep.admission.running + dep.admission.queued and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        await dep.backend.aclose()

    async def _dns_loop(self) -> None:
        interval = self.spec.discover.interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
                await self.sync()
            except Exception:  # one bad round must not stop discovery for the app's lifetime
                log.exception("%s: updating the replicas failed", self.label)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check.interval_seconds)
            try:
                await self.probe_all()
            except Exception:
                log.exception("%s: probing the replicas failed", self.label)

    async def probe_all(self) -> None:
        """Probe every replica once (concurrently, each within the timeout); mark the ones that changed."""
        replicas = list(self.replicas.values())
        results = await asyncio.gather(*(self.probe(self._probe_url(r.url), self.check.timeout_seconds)
                                         for r in replicas))
        for replica, ok in zip(replicas, results):
            if replica.health.record(ok):
                replica.deployment.up = replica.health.up
                log.warning("%s: replica %s is %s", self.label, replica.deployment.name,
                            "up again" if ok else "down (its health probe fails)")

    def describe(self, replica: Replica) -> dict[str, Any]:
        """A replica as the admin API lists it."""
        dep = replica.deployment
        return {"base_url": replica.url, "deployment": dep.name, "model": dep.card.id, "up": dep.up,
                "circuit": dep.breaker.state, "running": dep.admission.running, "queued": dep.admission.queued,
                "sources": self.membership.sources(replica.url)}

    async def aclose(self) -> None:
        """Stop resolving and probing; close every replica's backend, draining ones included."""
        tasks = [*self._loops, *self._draining]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops.clear()
        backends = [r.deployment.backend for r in self.replicas.values()] + [d.backend for d in
                                                                              self._draining.values()]
        self._draining.clear()
        for replica in self.replicas.values():
            self.router.remove(replica.deployment)
        self.replicas.clear()
        for backend in backends:
            await backend.aclose()


class Discovery:
    """Every replica set of the app, and the admin API's way to change them (``ReplicaControl``)."""

    def __init__(self, catalog: Any, router: Router, *, max_queue: int, resolver: Resolver | None = None,
                 probe: Probe | None = None) -> None:
        self.catalog = catalog
        self.router = router
        self.max_queue = max_queue
        self.resolver = resolver or resolve_dns
        self._http_probe = HttpProbe() if probe is None else None
        self.probe: Probe = probe or self._http_probe  # type: ignore[assignment]
        self.sets: dict[str, list[ReplicaSet]] = {}

    @staticmethod
    def expected_cards(catalog: Any) -> list[ModelCard]:
        """The cards of the catalog's replicated models (which may have no replica yet at start)."""
        if catalog is None:
            return []
        return [entry.card(spec.capabilities, {"upstream": spec.type}) for entry in catalog.models
                for spec in entry.deployments if spec.type != "local" and spec.replicated]

    def _new_set(self, entry: Any, spec: Any, index: int) -> ReplicaSet:
        replica_set = ReplicaSet(entry, spec, index, self.router, max_queue=self.max_queue, resolver=self.resolver,
                                 probe=self.probe)
        self.sets.setdefault(entry.id, []).append(replica_set)
        return replica_set

    async def start(self) -> None:
        """Build every replicated deployment of the catalog and join its first replicas."""
        if self.catalog is None:
            return
        started = [self._new_set(entry, spec, index) for entry in self.catalog.models
                   for index, spec in enumerate(entry.deployments) if spec.type != "local" and spec.replicated]
        await asyncio.gather(*(s.start() for s in started))

    def _entry(self, model: str) -> Any:
        catalog = self.catalog
        entry = None if catalog is None else next(
            (m for m in catalog.models if model == m.id or model in m.aliases), None)
        if entry is None:
            raise ModelNotFoundError(model)
        return entry

    def _target(self, entry: Any) -> ReplicaSet:
        """The set an added replica joins: the model's first, else one made from its first upstream deployment."""
        if self.sets.get(entry.id):
            return self.sets[entry.id][0]
        found = next(((i, s) for i, s in enumerate(entry.deployments) if s.type != "local"), None)
        if found is None:
            raise InvalidRequestError(f"The model {entry.id!r} has no upstream deployment to add a replica to.",
                                      param="model", code="model_not_replicable")
        replica_set = self._new_set(entry, found[1], found[0])
        replica_set.watch()
        return replica_set

    @staticmethod
    def _url(base_url: Any) -> str:
        try:
            return normalize_url(base_url)
        except ValueError as exc:
            raise InvalidRequestError(f"Invalid base_url: {exc}.", param="base_url",
                                      code="invalid_base_url") from None

    async def add_replica(self, model: str, base_url: Any) -> dict[str, Any]:
        """Add ``base_url`` to ``model``: balanced (once its first probe answers) from now on."""
        entry = self._entry(model)
        url = self._url(base_url)
        fixed = [normalize_url(s.base_url) for s in entry.deployments
                 if s.type != "local" and not s.replicated and s.base_url]
        taken = any(url in s.membership.desired() for s in self.sets.get(entry.id, ()))
        replica_set = None if url in fixed or taken else self._target(entry)
        if replica_set is None or not replica_set.membership.add(url):
            raise ConflictError(f"{url} is already a replica of {entry.id!r}.", param="base_url",
                                code="replica_exists")
        await replica_set.sync()
        return replica_set.describe(replica_set.replicas[url])

    async def remove_replica(self, model: str, base_url: Any) -> dict[str, Any]:
        """Take ``base_url`` out of ``model``: no new requests; it is closed when its last one ends."""
        entry = self._entry(model)
        url = self._url(base_url)
        for replica_set in self.sets.get(entry.id, ()):
            replica = replica_set.replicas.get(url)
            if replica is not None and replica_set.membership.remove(url):
                described = replica_set.describe(replica)
                await replica_set.sync()
                return {**described, "deleted": True}
        raise NotFoundError(f"{url} is not a replica of {entry.id!r} (only replicas listed by GET can be removed).",
                            param="base_url", code="replica_not_found")

    def replicas(self, model: str) -> list[dict[str, Any]]:
        """Every replica of ``model`` with its health."""
        entry = self._entry(model)
        return [s.describe(r) for s in self.sets.get(entry.id, ()) for r in s.replicas.values()]

    async def aclose(self) -> None:
        """Stop every set and close its backends, then the probe's connections."""
        for sets in self.sets.values():
            for replica_set in sets:
                await replica_set.aclose()
        if self._http_probe is not None:
            await self._http_probe.aclose()
