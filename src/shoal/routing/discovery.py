"""Which replicas a replicated deployment should have, and whether each is up: pure set logic.

A replicated upstream deployment (``base_urls``, ``discover``, or replicas added through the
admin API) is a set of base URLs, each served as a deployment of its own. :class:`Membership`
says which URLs the set should hold, from three sources: the catalog's ``base_urls``, the
addresses a DNS name resolves to, and the admin API (whose word is last: a replica it removes
stays out even while DNS still lists it, until it is added again). :func:`reconcile` turns
"what is" and "what should be" into what to start and stop; :class:`Health` turns probe results
into up / down with hysteresis. The tasks that act on these live in ``wiring/discovery.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses`` (every A/AAAA record); raises ``OSError`` when the name does not resolve."""

Probe = Callable[[str, float], Awaitable[bool]]
"""``(url, timeout) -> up``: whether a replica answered its health probe in time."""


def normalize_url(value: Any) -> str:
    """``value`` as a replica base URL (``http[s]://host[:port][/path]``, no trailing slash); ValueError if not one."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("base_url must be a non-empty string")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("base_url must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("base_url has no host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("base_url must not carry a query, a fragment or credentials")
    parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    return url


def host_port(url: str) -> str:
    """``host:port`` of a base URL (the port its scheme implies when it has none): a replica's name."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address_url(scheme: str, address: str, port: int, path: str) -> str:
    """The base URL of the replica at ``address`` (an IPv6 one in brackets)."""
    host = f"[{address}]" if ":" in address else address
    path = "/" + path.strip("/") if path.strip("/") else ""
    return f"{scheme}://{host}:{port}{path}"


class Membership:
    """The base URLs one replicated deployment should have, and where each comes from."""

    def __init__(self, configured: Iterable[str] = ()) -> None:
        self.configured = [normalize_url(u) for u in configured]
        self.discovered: list[str] = []
        self.added: list[str] = []
        self.removed: set[str] = set()

    def desired(self) -> list[str]:
        """Every URL the set should hold, once each: configured, then discovered, then added."""
        urls = dict.fromkeys((*self.configured, *self.discovered, *self.added))
        return [u for u in urls if u not in self.removed]

    def sources(self, url: str) -> list[str]:
        """Why ``url`` is wanted: ``config``, ``dns``, ``admin``."""
        return [name for name, urls in (("config", self.configured), ("dns", self.discovered),
                                        ("admin", self.added)) if url in urls]

    def discover(self, urls: Iterable[str]) -> None:
        """What the DNS name resolves to now (replacing what it resolved to before)."""
        self.discovered = sorted({normalize_url(u) for u in urls})

    def add(self, url: str) -> bool:
        """Want ``url`` (the admin API); False if it was wanted already."""
        url = normalize_url(url)
        if url in self.desired():
            return False
        self.removed.discard(url)
        if url not in self.added:
            self.added.append(url)
        return True

    def remove(self, url: str) -> bool:
        """Stop wanting ``url``, whatever its source (the admin API); False if it was not wanted."""
        url = normalize_url(url)
        if url not in self.desired():
            return False
        if url in self.added:
            self.added.remove(url)
        if url in self.configured or url in self.discovered:
            self.removed.add(url)
        return True


def reconcile(current: Iterable[str], desired: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(to_start, to_stop)``: the replicas to add and to remove so ``current`` becomes ``desired`` (orders kept)."""
    have = list(dict.fromkeys(current))
    want = list(dict.fromkeys(desired))
    return [u for u in want if u not in have], [u for u in have if u not in want]


class Health:
    """Up or down from consecutive probe results.

    Down after ``unhealthy_after`` failed probes in a row, up again after ``healthy_after`` good ones.
    """

    def __init__(self, unhealthy_after: int = 2, healthy_after: int = 1, up: bool = True) -> None:
        self.unhealthy_after = unhealthy_after
        self.healthy_after = healthy_after
        self.up = up
        self._streak = 0  # consecutive results that disagree with ``up``

    def record(self, ok: bool) -> bool:
        """Count one probe result; True when it changed ``up``."""
        if ok == self.up:
            self._streak = 0
            return False
        self._streak += 1
        if self._streak >= (self.healthy_after if ok else self.unhealthy_after):
            self.up, self._streak = ok, 0
            return True
        return False


class ReplicaControl(Protocol):
    """What the admin API asks of discovery (``wiring.discovery.Discovery``)."""

    async def add_replica(self, model: str, base_url: Any) -> dict[str, Any]:
        """Add a replica to ``model`` (404 unknown model, 400 malformed URL or no upstream, 409 duplicate)."""
        ...

    async def remove_replica(self, model: str, base_url: Any) -> dict[str, Any]:
        """Remove a replica: no new requests; its requests in flight finish, then its backend is closed."""
        ...

    def replicas(self, model: str) -> list[dict[str, Any]]:
        """The model's replicas with their health (404 unknown model)."""
        ...
