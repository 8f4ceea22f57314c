"""Builds the local backends of ``shoal serve``: resolve each model, then load it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from shoal.backends.base import Backend
from shoal.backends.local.engine import LocalBackend, LocalModelConfig
from shoal.backends.local.packaged import default_cache_dir, resolve_model_path
from shoal.config import Settings

log = logging.getLogger("shoal.local")


def parse_model_spec(spec: str) -> tuple[str | None, str]:
    """``ID=PATH_OR_NAME`` or ``PATH_OR_NAME``; returns (explicit id or None, source)."""
    if "=" in spec and not Path(spec).exists():
        model_id, _, source = spec.partition("=")
        return model_id.strip() or None, source.strip()
    return None, spec


def _load_with_progress(backend: LocalBackend) -> float:
    """Load the model, showing a spinner with elapsed time on a terminal."""
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
        seconds = _load_with_progress(backend)
        log.info("loaded %s (%s) in %.1f s: %d parallel slots, %d-token context each",
                 model_id, path.name, seconds, settings.parallel, ctx)
        backends.append(backend)
    return backends
