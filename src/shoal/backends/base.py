"""The one small protocol every backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shoal.core.types import GenerationEvent, GenerationRequest


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
    """Raised by a backend when generation fails.

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
    """A source of generations: the local engine or an upstream."""

    name: str
    capacity: int
    """How many generations it runs at once; the pipeline queues the rest."""

    def models(self) -> list[ModelCard]:
        """The models this backend serves."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream events for ``request``; the last one is a ``Finish``.

        Closing the iterator early must stop the generation and free its slot.
        Raises :class:`BackendFailure` on failure.
        """
        ...

    async def health(self) -> dict[str, Any]:
        """A small status dict (``{"status": "ok", ...}``)."""
        ...

    async def aclose(self) -> None:
        """Release the engine or connections."""
        ...
