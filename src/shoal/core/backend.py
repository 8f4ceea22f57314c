"""What a backend is to the rest of Shoal: its protocol, the card of a model it serves, its failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shoal.core.embeddings import EmbeddingEvent, EmbeddingRequest
from shoal.core.types import GENERATE, GenerationEvent, GenerationRequest

@dataclass(frozen=True)
class ModelCard:
    """What a backend serves under one model id."""

    id: str
    owned_by: str
    created: int
    context_length: int
    capabilities: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class BackendFailure(Exception):
    """Raised by a backend when an operation fails.

    ``client_error`` marks failures caused by the request itself (for example a
    prompt longer than the context), which become 400s rather than 502s.
    ``status`` is the upstream's HTTP status (if any); ``retryable`` marks
    failures another attempt or another deployment may not have (connect errors,
    timeouts, 5xx, 429), and ``retry_after`` the seconds the upstream asked to wait.
    """

    def __init__(self, message: str, *, client_error: bool = False, code: str | None = None,
                 status: int | None = None, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.client_error = client_error
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@runtime_checkable
class Backend(Protocol):
    """A source of generations (and other operations): the local engine or an upstream.

    Every member is declared here, optional abilities included, so callers never probe
    a backend with ``getattr``; :class:`BaseBackend` gives the usual defaults.
    """

    name: str
    capacity: int
    """How many operations it runs at once; the pipeline queues the rest."""
    operations: frozenset[str]
    """What it serves (``generate``; other kinds as they are added); the router skips the rest."""
    reserved_for: frozenset[str] | None
    """Key ids or names that may use it (None = every caller)."""

    def models(self) -> list[ModelCard]:
        """The models this backend serves."""
        ...

    def status(self) -> dict[str, Any] | None:
        """A local model's live mode and state (``{"mode": ..., "state": ...}``), or None."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream events for ``request``; the last one is a ``Finish``.

        Closing the iterator early must stop the generation and free its slot.
        Raises :class:`BackendFailure` on failure.
        """
        ...

    def embed(self, request: EmbeddingRequest) -> AsyncIterator[EmbeddingEvent]:
        """The vectors of ``request`` (a backend listing ``embed`` in :attr:`operations`), then a ``Finish``."""
        ...

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """The exact prompt tokens of ``request`` on this model, or None when it cannot count them."""
        ...

    async def health(self) -> dict[str, Any]:
        """A small status dict (``{"status": "ok", ...}``)."""
        ...

    async def aclose(self) -> None:
        """Release the engine or connections."""
        ...


class BaseBackend:
    """Defaults for :class:`Backend`'s optional members: text generation only, open to all, no live state."""

    name: str
    operations: frozenset[str] = frozenset({GENERATE})
    reserved_for: frozenset[str] | None = None

    def status(self) -> dict[str, Any] | None:
        """No live state to show."""
        return None

    def embed(self, request: EmbeddingRequest) -> AsyncIterator[EmbeddingEvent]:
        """Not served here (the router only asks backends listing ``embed``)."""
        raise self.unsupported("embeddings")

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """Cannot count: callers fall back to an estimate."""
        return None

    def unsupported(self, operation: str) -> BackendFailure:
        """The failure for an operation this backend does not serve (the router avoids asking)."""
        return BackendFailure(f"{self.name} does not serve {operation}",
                              client_error=True, code="model_not_capable")
