"""Who is calling: static keys, managed keys (cached briefly), model scope and request counting."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from shoal.auth.keys import StaticKeys, bearer_token, hash_key, same_hash
from shoal.auth.ratelimit import RateLimiter
from shoal.core.context import RequestContext
from shoal.errors import AuthenticationError
from shoal.storage.keys import ApiKey, KeyStore

log = logging.getLogger("shoal.auth")

CACHE_ENTRIES = 10_000


class Access:
    """Turns an ``Authorization`` header into the :class:`RequestContext` of the request.

    Managed keys are looked up by the SHA-256 of the token and cached for
    ``ttl`` seconds, so a key revoked on another replica (or with the CLI)
    stops working here within ``ttl``; :meth:`forget` drops it at once on this
    replica. Unknown tokens are not cached (a new key works at once everywhere).

    /v1 needs a key when static keys or an admin token are configured, or when
    any managed key was ever created.
    """

    def __init__(self, static: StaticKeys, store: KeyStore, limiter: RateLimiter, *,
                 admin_enabled: bool = False, canonical: Callable[[str], str | None] = lambda name: name,
                 ttl: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.static = static
        self.store = store
        self.limiter = limiter
        self.admin_enabled = admin_enabled
        self.canonical = canonical
        self.ttl = ttl
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, ApiKey]] = OrderedDict()
        self._managed: tuple[float, bool] = (float("-inf"), False)
        self._inflight: dict[str, asyncio.Future[tuple[ApiKey, str] | None]] = {}

    async def auth_required(self) -> bool:
        """Whether /v1 calls must carry a key right now."""
        if self.static.enabled or self.admin_enabled:
            return True
        checked_at, exists = self._managed
        if exists:
            return True
        if self.clock() - checked_at >= self.ttl:
            exists = await self.store.any()
            self._managed = (self.clock(), exists)
        return exists

    async def _lookup(self, candidate: str) -> ApiKey | None:
        now = self.clock()
        cached = self._cache.get(candidate)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._fetch(candidate)
        if found is None or not same_hash(candidate, (found[1],)):
            self._cache.pop(candidate, None)
            return None
        key = found[0]
        self._cache[candidate] = (now + self.ttl, key)
        self._cache.move_to_end(candidate)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return key

    async def _fetch(self, candidate: str) -> tuple[ApiKey, str] | None:
        """One database lookup per key at a time: a busy key's cache entry expires under many requests at once."""
        task = self._inflight.get(candidate)
        if task is None:
            task = asyncio.ensure_future(self.store.by_hash(candidate))
            self._inflight[candidate] = task
            task.add_done_callback(lambda _: self._inflight.pop(candidate, None))
        # Shielded: one caller going away must not cancel the lookup the others wait for.
        return await asyncio.shield(task)

    def forget(self, key_id: str) -> None:
        """Drop a key from this replica's cache (after revoking or rotating it here)."""
        for cached_hash, (_, key) in list(self._cache.items()):
            if key.id == key_id:
                del self._cache[cached_hash]

    def scope(self, key: ApiKey) -> frozenset[str] | None:
        """The model ids a key may use (aliases resolved to ids); None for all."""
        if key.models is None:
            return None
        return frozenset(self.canonical(name) or name for name in key.models)

    async def authenticate(self, authorization: str | None, endpoint: str = "") -> RequestContext:
        """The caller of a request: 401 for a missing, unknown or revoked key; 429 past the key's rpm."""
        if not await self.auth_required():
            return RequestContext(endpoint=endpoint)
        # Hashed once: the static keys and the managed-key cache are both keyed by the hash.
        candidate = hash_key(bearer_token(authorization))
        owner = self.static.match_hash(candidate)
        if owner is not None:
            return RequestContext(owner=owner, key_id=owner, endpoint=endpoint)
        key = await self._lookup(candidate)
        if key is None:
            raise AuthenticationError("Incorrect API key provided.")
        if not key.active:
            raise AuthenticationError("This API key has been revoked.", code="revoked_api_key")
        context = RequestContext(owner=key.id, key_id=key.id, allowed_models=self.scope(key),
                                 endpoint=endpoint, key=key)
        await self.limiter.count_request(key, context.headers)
        return context
