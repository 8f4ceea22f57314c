"""Embedding deployments of the catalog: a local llama.cpp model in embedding mode, or an upstream."""

from __future__ import annotations

import logging
from typing import Any

from shoal.backends.local.embedder import LocalEmbedder, LocalEmbedderConfig
from shoal.backends.local.hub import resolve_hub_file
from shoal.backends.local.packaged import default_cache_dir, resolve_model_path
from shoal.backends.local.serverless import MIB, MemoryPool
from shoal.backends.openai_embeddings import OpenAIEmbeddingsBackend
from shoal.backends.upstream import UpstreamConfig
from shoal.config import Settings
from shoal.core.backend import Backend
from shoal.wiring.catalog_card import CatalogCard
from shoal.wiring.local import load_with_progress

log = logging.getLogger("shoal.catalog")

EMBEDDING_CTX_PER_SLOT = 512
"""Tokens per input when neither the deployment nor the model says (a typical embedding model's window)."""


def local_embedder(settings: Settings, entry: Any, spec: Any, index: int, pool: MemoryPool) -> Backend:
    """A catalog entry's local embedding deployment, loaded now (embedding models are dedicated)."""
    cache_dir = settings.model_cache or default_cache_dir()
    if spec.hf:
        path, packaged = resolve_hub_file(spec.hf), None
    else:
        path, packaged = resolve_model_path(spec.source, cache_dir)
    known = packaged.embedding if packaged is not None else None
    config = LocalEmbedderConfig(
        model_id=entry.id, path=path, dimensions=known.dimensions if known else None,
        pooling=spec.pooling or (known.pooling if known else "mean"),
        matryoshka_dimensions=known.matryoshka_dimensions if known else (),
        parallel=spec.parallel or settings.parallel,
        ctx_per_slot=min(spec.ctx_per_slot or EMBEDDING_CTX_PER_SLOT, entry.context_length),
        threads=spec.threads or settings.threads, aliases=entry.aliases, description=entry.description,
        verbose=settings.log_level == "debug")
    embedder = LocalEmbedder(config)
    seconds = load_with_progress(embedder)
    name = spec.name or f"{entry.id}/local-{index}"
    pool.pin(name, spec.memory_mb * MIB if spec.memory_mb else path.stat().st_size)
    log.info("loaded embedding model %s (%s) in %.1f s: %d dimensions, %s pooling", entry.id, path.name, seconds,
             embedder.dimensions, config.pooling)
    card = entry.card(None, {"engine": "llama.cpp", "file": path.name, "dimensions": embedder.dimensions})
    return CatalogCard(embedder, card, name, reserved_for=spec.reserved_for, max_concurrency=spec.max_concurrency)


def upstream_embedder(entry: Any, spec: Any, name: str, config: UpstreamConfig) -> Backend:
    """A catalog entry's OpenAI-compatible ``/embeddings`` upstream (or one replica of it)."""
    card = entry.card(spec.capabilities, {"upstream": spec.type})
    return OpenAIEmbeddingsBackend(name, card, config, capacity=spec.max_concurrency)
