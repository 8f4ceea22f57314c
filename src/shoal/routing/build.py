"""Builds the backends of ``shoal serve`` from the catalog (and the ``--model`` shortcuts)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from shoal.backends.base import Backend, ModelCard
from shoal.backends.local.serverless import MIB, MemoryPool, ServerlessBackend
from shoal.config import Settings
from shoal.core.types import GenerationEvent, GenerationRequest

log = logging.getLogger("shoal.catalog")


class CatalogCard:
    """A backend shown under its catalog card (id, aliases, capabilities, prices) instead of its own."""

    def __init__(self, backend: Backend, card: ModelCard, name: str | None = None, *,
                 reserved_for: tuple[str, ...] = (), max_concurrency: int | None = None,
                 mode: str | None = None) -> None:
        self.inner = backend
        self.card = card
        self.name = name or backend.name
        self.capacity = min(backend.capacity, max_concurrency or backend.capacity)
        self.reserved_for = frozenset(reserved_for) or None
        """Key ids or names that may use this deployment (None = every key)."""
        self.mode = mode

    def status(self) -> dict[str, Any] | None:
        """A local deployment's mode and state (the inner serverless backend's live one), else None."""
        inner = getattr(self.inner, "status", None)
        if inner is not None:
            return dict(inner())
        return {"mode": self.mode, "state": "loaded"} if self.mode else None

    def models(self) -> list[ModelCard]:
        """The catalog card."""
        return [self.card]

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """The inner backend's generation."""
        return self.inner.generate(request)

    async def health(self) -> dict[str, Any]:
        """The inner backend's health."""
        return await self.inner.health()

    async def aclose(self) -> None:
        """Close the inner backend."""
        await self.inner.aclose()


def _local(settings: Settings, entry: Any, spec: Any, index: int, pool: MemoryPool) -> Backend:
    from shoal.backends.local.engine import LocalBackend, LocalModelConfig
    from shoal.backends.local.factory import _load_with_progress
    from shoal.backends.local.hub import resolve_hub_file
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    cache_dir = settings.model_cache or default_cache_dir()
    path = resolve_hub_file(spec.hf) if spec.hf else resolve_model_path(spec.source, cache_dir)[0]
    ctx = min(spec.ctx_per_slot or settings.ctx_per_slot, entry.context_length)
    config = LocalModelConfig(
        model_id=entry.id, path=path, parallel=spec.parallel or settings.parallel, ctx_per_slot=ctx,
        threads=spec.threads or settings.threads, aliases=entry.aliases, description=entry.description,
        verbose=settings.log_level == "debug")
    name = spec.name or f"{entry.id}/local-{index}"
    size = spec.memory_mb * MIB if spec.memory_mb else path.stat().st_size
    # Text-only here (no multimodal projector): a local deployment never takes images, whatever the model says.
    caps = spec.capabilities if spec.capabilities is not None else entry.capabilities
    card = entry.card(tuple(c for c in caps if c != "vision"), {"engine": "llama.cpp", "file": path.name})
    if spec.mode == "serverless":
        backend: Backend = ServerlessBackend(name, card, lambda: LocalBackend(config), capacity=config.parallel,
                                             size=size, pool=pool, idle_unload_seconds=spec.idle_unload_seconds)
        log.info("model %s: serverless (~%d MiB), loads on its first request, unloads after %g s idle",
                 entry.id, size // MIB, spec.idle_unload_seconds)
    else:
        backend = LocalBackend(config)
        seconds = _load_with_progress(backend)
        pool.pin(name, size)
        log.info("loaded %s (%s) in %.1f s (dedicated)", entry.id, path.name, seconds)
    return CatalogCard(backend, card, name, reserved_for=spec.reserved_for, max_concurrency=spec.max_concurrency,
                       mode=spec.mode)


def _upstream(entry: Any, spec: Any, index: int) -> Backend:
    from shoal.backends.upstream import UpstreamConfig

    config = UpstreamConfig(base_url=spec.base_url, model=spec.model, api_key_env=spec.api_key_env,
                            timeouts=spec.timeouts.upstream(), headers=dict(spec.headers),
                            extra_body=dict(spec.extra_body))
    name = spec.name or f"{entry.id}/{spec.type}-{index}"
    card = entry.card(spec.capabilities, {"upstream": spec.type})
    if spec.type == "anthropic":
        from shoal.backends.anthropic import AnthropicBackend

        return AnthropicBackend(name, card, config, capacity=spec.max_concurrency, max_tokens=spec.max_tokens,
                                cache_prompt=spec.cache_prompt)
    if spec.api == "responses":
        from shoal.backends.openai_responses import OpenAIResponsesBackend

        return OpenAIResponsesBackend(name, card, config, capacity=spec.max_concurrency)
    from shoal.backends.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(name, card, config, capacity=spec.max_concurrency)


def catalog_backends(settings: Settings) -> list[Backend]:
    """The ``--model`` shortcuts' local backends, then one backend per catalog deployment."""
    from shoal.backends.local.factory import local_backends

    backends: list[Backend] = local_backends(settings) if settings.models else []
    limit = settings.memory_limit_mb * MIB if settings.memory_limit_mb else None
    pool = MemoryPool(limit, wait_seconds=settings.memory_wait_seconds)
    for backend in backends:
        config = getattr(backend, "config", None)
        if config is not None:
            pool.pin(backend.name, config.path.stat().st_size)
    catalog = settings.catalog
    if catalog is None:
        return backends
    for entry in catalog.models:
        for index, spec in enumerate(entry.deployments):
            if spec.type == "local":
                backends.append(_local(settings, entry, spec, index, pool))
            else:
                backends.append(_upstream(entry, spec, index))
                log.info("model %s: upstream %s (%s)", entry.id, spec.base_url, spec.type)
    return backends


def router_specs(settings: Settings) -> list[Any]:
    """The catalog's routers, in routing form."""
    catalog = settings.catalog
    return [r.spec() for r in catalog.routers] if catalog is not None else []
