"""Builds what makes Shoal multi-tenant, once per app: managed keys, rate limits, budgets, metering."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shoal.auth.access import Access
from shoal.auth.admin import AdminAuth
from shoal.auth.concurrency import ConcurrencyLimiter, InFlight, LocalInFlight, RedisInFlight
from shoal.auth.counters import Counters, LocalCounters, RedisCounters
from shoal.auth.keys import StaticKeys
from shoal.auth.manage import KeyManager
from shoal.auth.ratelimit import RateLimiter
from shoal.config import Settings
from shoal.api.services import Tenancy
from shoal.storage.db import Database
from shoal.storage.keys import KeyStore
from shoal.storage.usage import UsageStore
from shoal.usage.budget import Ledger, LocalLedger, RedisLedger
from shoal.usage.meter import Meter
from shoal.usage.pricing import PriceTable, parse_prices

log = logging.getLogger("shoal.tenancy")


SHARED_DB_WITHOUT_REDIS = (
    "PostgreSQL without Redis: rate limits, budgets and per-key concurrency are counted IN THIS PROCESS ONLY. "
    "If several replicas share this database, each enforces the limits alone (N replicas let a key use N times "
    "its rpm, tpm and concurrency, and overspend its budget). Set --redis-url / SHOAL_REDIS_URL to share them.")
"""Logged at start: one replica on PostgreSQL is fine, several need Redis (a warning, not a refusal)."""


class LimitsStoreError(RuntimeError):
    """Redis was configured but cannot be reached at startup."""


def safe_redis_url(url: str) -> str:
    """The Redis URL without its credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


async def connect_redis(url: str) -> Any:
    """A ``redis.asyncio`` client that answered a PING; :class:`LimitsStoreError` otherwise."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=5, health_check_interval=30)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        raise LimitsStoreError(f"Cannot reach Redis at {safe_redis_url(url)} ({type(exc).__name__}: {exc}). "
                               "Start it, fix --redis-url / SHOAL_REDIS_URL, or unset it for in-process limits.") \
            from exc
    return client


async def build_tenancy(settings: Settings, db: Database, static: StaticKeys | None = None) -> Tenancy:
    """Build the key store, limiter, ledger, meter and access check for ``settings``."""
    usage = UsageStore(db)
    store = KeyStore(db)
    redis = None
    counters: Counters
    ledger: Ledger
    inflight: InFlight
    if settings.redis_url:
        redis = await connect_redis(settings.redis_url)
        counters = RedisCounters(redis, settings.redis_prefix)
        ledger = RedisLedger(redis, settings.redis_prefix, usage.spend)
        inflight = RedisInFlight(redis, settings.redis_prefix)
    else:
        counters = LocalCounters()
        ledger = LocalLedger(usage.spend)
        inflight = LocalInFlight()
        if (settings.database_url or "").startswith("postgres"):
            log.warning(SHARED_DB_WITHOUT_REDIS)
    limiter = RateLimiter(counters)
    access = Access(static or StaticKeys(settings.api_keys), store, limiter,
                    admin_enabled=bool(settings.admin_token), ttl=settings.key_cache_seconds)
    meter = Meter(usage, PriceTable(parse_prices(settings.prices)), limiter, ledger,
                  ConcurrencyLimiter(inflight, settings.max_concurrency_per_key))
    tenancy = Tenancy(access=access, keys=KeyManager(store), usage=usage, meter=meter,
                      admin=AdminAuth(settings.admin_token), redis=redis)
    log.info("limits and budgets: %s%s; admin API %s", tenancy.mode,
             f" ({safe_redis_url(settings.redis_url)})" if settings.redis_url else "",
             "on" if tenancy.admin.enabled else "off (no admin token)")
    return tenancy
