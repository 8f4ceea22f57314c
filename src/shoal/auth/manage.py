"""Managing model access keys: create, list, revoke, rotate (shared by the CLI and the admin API)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from shoal.auth.keys import display_prefix, hash_key, new_key_id, new_secret
from shoal.errors import InvalidRequestError, NotFoundError
from shoal.storage.keys import ApiKey, KeyStore

log = logging.getLogger("shoal.keys")

PERIODS = ("day", "month")
MAX_NAME = 128


@dataclass(frozen=True)
class KeySpec:
    """What a new key may do: its models, rate limits and budget."""

    name: str
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: str | None = None

    def checked(self) -> KeySpec:
        """This spec, validated (400 naming the field otherwise); the period defaults to month with a budget."""
        name = (self.name or "").strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidRequestError(f"name must be 1 to {MAX_NAME} characters.", param="name")
        models = None
        if self.models is not None:
            models = tuple(dict.fromkeys(m.strip() for m in self.models if m and m.strip()))
            if not models:
                raise InvalidRequestError("models must name at least one model (or be left out for all).",
                                          param="models")
        for field_name, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidRequestError(f"{field_name} must be a positive integer.", param=field_name)
        budget, period = self.budget_usd, self.budget_period
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) \
                    or budget < 0:
                raise InvalidRequestError("budget_usd must be a non-negative number of USD.", param="budget_usd")
            period = period or "month"
        if period is not None and period not in PERIODS:
            raise InvalidRequestError(f"budget_period must be one of {', '.join(PERIODS)}.", param="budget_period")
        if period is not None and budget is None:
            raise InvalidRequestError("budget_period needs budget_usd.", param="budget_period")
        return KeySpec(name, models, self.rpm, self.tpm, float(budget) if budget is not None else None, period)


def split_models(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``a,b`` (or a list) as a tuple of model ids; None for all models."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(p.strip() for p in parts if p.strip())


class KeyManager:
    """The operations on managed keys; the secret is returned once and never stored or logged."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store

    async def create(self, spec: KeySpec) -> tuple[ApiKey, str]:
        """A new key and its secret (show it to the user once)."""
        spec = spec.checked()
        secret = new_secret()
        key = ApiKey(id=new_key_id(), name=spec.name, prefix=display_prefix(secret), models=spec.models,
                     rpm=spec.rpm, tpm=spec.tpm, budget_usd=spec.budget_usd, budget_period=spec.budget_period,
                     created_at=time.time())
        key = await self.store.create(key, hash_key(secret))
        log.info("created key %s (%s)", key.id, key.name)
        return key, secret

    async def list(self, include_revoked: bool = True) -> list[ApiKey]:
        """Every key (without secrets or hashes)."""
        return await self.store.list(include_revoked)

    async def get(self, key_id: str) -> ApiKey:
        """One key; 404 if unknown."""
        key = await self.store.get(key_id)
        if key is None:
            raise NotFoundError(f"No key with id '{key_id}'.", param="id", code="key_not_found")
        return key

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); 404 if unknown."""
        key = await self.store.revoke(key_id)
        if key is None:
            raise NotFoundError(f"No key with id '{key_id}'.", param="id", code="key_not_found")
        log.info("revoked key %s (%s)", key.id, key.name)
        return key

    async def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """Give a key a new secret; the id, scope, limits, usage and budget carry over, the old secret dies."""
        existing = await self.get(key_id)
        if not existing.active:
            raise InvalidRequestError(f"Key '{key_id}' is revoked; create a new key instead.", param="id",
                                      code="key_revoked")
        secret = new_secret()
        key = await self.store.replace_secret(key_id, display_prefix(secret), hash_key(secret))
        if key is None:
            raise InvalidRequestError(f"Key '{key_id}' is revoked; create a new key instead.", param="id",
                                      code="key_revoked")
        log.info("rotated key %s (%s)", key.id, key.name)
        return key, secret
