"""Local llama.cpp backends: the ``--model`` shortcuts and the catalog's ``local`` deployments."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from shoal.backends.local.embedder import LocalEmbedder
from shoal.backends.local.engine import LocalBackend, LocalModelConfig
from shoal.backends.local.hub import resolve_hub_file
from shoal.backends.local.packaged import default_cache_dir, resolve_model_path
from shoal.backends.local.serverless import MIB, MemoryPool, ServerlessBackend
from shoal.backends.local.speculative import NGRAM_DRAFT_MAX, SpeculativeConfig
from shoal.config import Settings
from shoal.core.backend import Backend
from shoal.wiring.catalog_card import CatalogCard

log = logging.getLogger("shoal.local")


def parse_model_spec(spec: str) -> tuple[str | None, str]:
    """``ID=PATH_OR_NAME`` or ``PATH_OR_NAME``; returns (explicit id or None, source)."""
    if "=" in spec and not Path(spec).exists():
        model_id, _, source = spec.partition("=")
        return model_id.strip() or None, source.strip()
    return None, spec


def load_with_progress(backend: LocalBackend | LocalEmbedder) -> float:
    """Load the model (generation or embedding), showing a spinner with elapsed time on a terminal."""
    name = backend.config.model_id
    if not sys.stderr.isatty():
        log.info("loading %s from %s", name, backend.config.path)
        return backend.load()
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("[bold]loading[/] {task.description}"), TimeElapsedColumn(),
                  transient=True) as progress:
        progress.add_task(name, total=None)
        return backend.load()


def local_backends(settings: Settings) -> list[Backend]:
    """One loaded :class:`LocalBackend` per ``--model``."""
    cache_dir = settings.model_cache or default_cache_dir()
    backends: list[Backend] = []
    for spec in settings.models:
        explicit_id, source = parse_model_spec(spec)
        path, packaged = resolve_model_path(source, cache_dir)
        model_id = explicit_id or (packaged.name if packaged else path.stem)
        aliases = tuple(a for a in (packaged.aliases if packaged else ()) if a != model_id)
        ctx = settings.ctx_per_slot
        if packaged is not None:
            ctx = min(ctx, packaged.context_length)
        backend = LocalBackend(LocalModelConfig(
            model_id=model_id,
            path=path,
            parallel=settings.parallel,
            ctx_per_slot=ctx,
            threads=settings.threads,
            aliases=aliases,
            description=packaged.description if packaged else "",
            verbose=settings.log_level == "debug",
        ))
        seconds = load_with_progress(backend)
        log.info("loaded %s (%s) in %.1f s: %d parallel slots, %d-token context each",
                 model_id, path.name, seconds, settings.parallel, ctx)
        backends.append(backend)
    return backends


def catalog_local(settings: Settings, entry: Any, spec: Any, index: int, pool: MemoryPool) -> Backend:
    """A catalog entry's local deployment: resolved, then loaded now (dedicated) or on first use (serverless)."""
    cache_dir = settings.model_cache or default_cache_dir()
    path = resolve_hub_file(spec.hf) if spec.hf else resolve_model_path(spec.source, cache_dir)[0]
    ctx = min(spec.ctx_per_slot or settings.ctx_per_slot, entry.context_length)
    parallel = spec.parallel or settings.parallel
    speculative = speculative_config(spec, cache_dir, parallel)
    config = LocalModelConfig(
        model_id=entry.id, path=path, parallel=parallel, ctx_per_slot=ctx,
        threads=spec.threads or settings.threads, aliases=entry.aliases, description=entry.description,
        verbose=settings.log_level == "debug", speculative=speculative)
    name = spec.name or f"{entry.id}/local-{index}"
    size = spec.memory_mb * MIB if spec.memory_mb else estimated_size(path, speculative)
    # Text-only here (no multimodal projector): a local deployment never takes images, whatever the model says.
    caps = spec.capabilities if spec.capabilities is not None else entry.capabilities
    card = entry.card(tuple(c for c in caps if c != "vision"), {"engine": "llama.cpp", "file": path.name})
    if spec.mode == "serverless":
        backend: Backend = ServerlessBackend(name, card, lambda: LocalBackend(config), capacity=config.parallel,
                                             size=size, pool=pool, idle_unload_seconds=spec.idle_unload_seconds)
        log.info("model %s: serverless (~%d MiB), loads on its first request, unloads after %g s idle",
                 entry.id, size // MIB, spec.idle_unload_seconds)
    else:
        engine = LocalBackend(config)
        seconds = load_with_progress(engine)
        backend = engine
        pool.pin(name, size)
        log.info("loaded %s (%s) in %.1f s (dedicated)", entry.id, path.name, seconds)
    return CatalogCard(backend, card, name, reserved_for=spec.reserved_for, max_concurrency=spec.max_concurrency,
                       mode=spec.mode)


def speculative_config(spec: Any, cache_dir: Path, parallel: int) -> SpeculativeConfig | None:
    """A local deployment's ``draft`` settings as engine config (its draft model resolved); None without.

    The speculating server gets all ``parallel`` slots unless ``draft_max_streams`` says fewer.
    """
    if not spec.draft:
        return None
    common = {"min_acceptance": spec.draft_min_acceptance,
              "max_streams": min(spec.draft_max_streams or parallel, parallel)}
    if spec.draft == "ngram":
        size = {"ngram_size": spec.draft_ngram_size} if spec.draft_ngram_size else {}
        return SpeculativeConfig(kind="ngram", draft_max=spec.draft_max or NGRAM_DRAFT_MAX, **size, **common)
    draft_path, _ = resolve_model_path(spec.draft, cache_dir)
    return SpeculativeConfig(kind="draft", draft_path=draft_path, draft_max=spec.draft_max or 8,
                             draft_min=spec.draft_min or 0, **common)


def estimated_size(path: Path, speculative: SpeculativeConfig | None) -> int:
    """Bytes a local model takes: its file; speculating, a second copy (the plain server) and the draft model.

    llama.cpp repacks quantized weights for the CPU into memory of its own, so the two
    servers of a speculating deployment do not share them.
    """
    size = path.stat().st_size
    if speculative is None:
        return size
    return 2 * size + (speculative.draft_path.stat().st_size if speculative.draft_path else 0)
