"""Builds the backends of ``shoal serve`` from the catalog (and the ``--model`` shortcuts)."""

from __future__ import annotations

import logging
from typing import Any

from shoal.backends.local.engine import LocalBackend
from shoal.backends.local.serverless import MIB, MemoryPool
from shoal.config import Settings
from shoal.core.backend import Backend
from shoal.wiring.embeddings import local_embedder, upstream_embedder
from shoal.wiring.local import catalog_local, local_backends

log = logging.getLogger("shoal.catalog")


def upstream_backend(entry: Any, spec: Any, index: int, base_url: str | None = None,
                     name: str | None = None) -> Backend:
    """The backend of upstream deployment ``spec`` (the ``index``-th of ``entry``), at ``base_url`` if given.

    A replica (``base_url`` given) is one member of a replicated deployment, named ``name``.
    """
    from shoal.backends.upstream import UpstreamConfig

    config = UpstreamConfig(base_url=base_url or spec.base_url, model=spec.model, api_key_env=spec.api_key_env,
                            timeouts=spec.timeouts.upstream(), headers=dict(spec.headers),
                            extra_body=dict(spec.extra_body))
    name = name or spec.name or f"{entry.id}/{spec.type}-{index}"
    if entry.embeddings:
        return upstream_embedder(entry, spec, name, config)
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
    """The ``--model`` shortcuts' local backends, then one per catalog deployment (but replicated ones)."""
    backends: list[Backend] = local_backends(settings) if settings.models else []
    limit = settings.memory_limit_mb * MIB if settings.memory_limit_mb else None
    pool = MemoryPool(limit, wait_seconds=settings.memory_wait_seconds)
    for backend in backends:
        if isinstance(backend, LocalBackend):
            pool.pin(backend.name, backend.config.path.stat().st_size)
    catalog = settings.catalog
    if catalog is None:
        return backends
    for entry in catalog.models:
        for index, spec in enumerate(entry.deployments):
            if spec.type == "local" and entry.embeddings:
                backends.append(local_embedder(settings, entry, spec, index, pool))
            elif spec.type == "local":
                backends.append(catalog_local(settings, entry, spec, index, pool))
            elif not spec.replicated:  # replicas come and go: wiring/discovery.py builds theirs
                backends.append(upstream_backend(entry, spec, index))
                log.info("model %s: upstream %s (%s)", entry.id, spec.base_url, spec.type)
    return backends


def router_specs(settings: Settings) -> list[Any]:
    """The catalog's routers, in routing form."""
    catalog = settings.catalog
    return [r.spec() for r in catalog.routers] if catalog is not None else []


def balance_specs(settings: Settings) -> dict[str, Any]:
    """Each catalog model's balancing of its deployments (models left out balance by load)."""
    catalog = settings.catalog
    return {m.id: m.balance.spec() for m in catalog.models} if catalog is not None else {}
