"""The embedding operation: a request for vectors, the event that carries them, and its size bounds."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import ClassVar, Protocol, Union

from shoal.core.records import record
from shoal.core.types import CHARS_PER_TOKEN, Finish

EMBED = "embed"
"""The operation's name, listed in ``Backend.operations`` by a backend that serves it."""
EMBEDDINGS_CAPABILITY = "embeddings"
"""What a model's card lists when it serves embeddings (shown in ``/v1/models``)."""


@record
class EmbeddingRequest:
    """Vectors for ``inputs``: all strings, or all token-id arrays, in order."""

    model: str
    inputs: tuple[str, ...] | tuple[tuple[int, ...], ...]
    dimensions: int | None = None
    """A shorter vector size, for models trained to be truncated (Matryoshka); None = native."""
    user: str | None = None

    kind: ClassVar[str] = EMBED
    stream: ClassVar[bool] = False
    """Answered whole: no first byte before the vectors are ready."""

    def needs(self) -> tuple[str, ...]:
        """An embedding model."""
        return (EMBEDDINGS_CAPABILITY,)

    def hard_needs(self) -> tuple[str, ...]:
        """A text model named directly cannot fall back to embedding."""
        return (EMBEDDINGS_CAPABILITY,)

    def prefers(self) -> tuple[str, ...]:
        """Nothing beyond what it needs."""
        return ()

    def typical_input_tokens(self) -> int:
        """About four characters a token for text; the length of a token array."""
        return sum(len(item) if isinstance(item, tuple) else math.ceil(len(item) / CHARS_PER_TOKEN)
                   for item in self.inputs)

    def upper_input_tokens(self, context_length: int) -> int:
        """A token covers at least one byte of text (each input is read on its own, so no context cap)."""
        return sum(len(item) if isinstance(item, tuple) else len(item.encode()) + 2 for item in self.inputs)

    def max_output_tokens(self, context_length: int) -> int:
        """Embeddings write no tokens."""
        return 0

    def requested_output_tokens(self) -> int | None:
        """Embeddings write no tokens."""
        return None

    def run(self, backend: Embedder) -> AsyncIterator[EmbeddingEvent]:
        """The backend's embedding."""
        return backend.embed(self)


@record
class Vectors:
    """The vectors of one request, in input order (then a ``Finish`` carries the tokens read)."""

    vectors: list[list[float]]
    """Lists, not tuples: a batch holds up to 2,048 x thousands of floats, copied once less."""


EmbeddingEvent = Union[Vectors, Finish]


class Embedder(Protocol):
    """What :meth:`EmbeddingRequest.run` needs of a backend (``core.backend.Backend`` has it)."""

    def embed(self, request: EmbeddingRequest) -> AsyncIterator[EmbeddingEvent]:
        """The vectors of ``request``, then a ``Finish`` with the tokens read."""
        ...
