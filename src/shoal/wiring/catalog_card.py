"""A backend shown under its catalog card: the catalog's id, aliases, capabilities and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shoal.core.backend import Backend, BaseBackend, ModelCard
from shoal.core.embeddings import EmbeddingEvent, EmbeddingRequest
from shoal.core.types import GenerationEvent, GenerationRequest


class CatalogCard(BaseBackend):
    """A backend shown under its catalog card (id, aliases, capabilities, prices) instead of its own."""

    def __init__(self, backend: Backend, card: ModelCard, name: str | None = None, *,
                 reserved_for: tuple[str, ...] = (), max_concurrency: int | None = None,
                 mode: str | None = None) -> None:
        self.inner = backend
        self.card = card
        self.name = name or backend.name
        self.capacity = min(backend.capacity, max_concurrency or backend.capacity)
        self.reserved_for = frozenset(reserved_for) or None
        """Key ids or names that may use this deployment (None = every key)."""
        self.mode = mode
        self.operations = backend.operations

    def status(self) -> dict[str, Any] | None:
        """A local deployment's mode and state (the inner serverless backend's live one), else None."""
        inner = self.inner.status()
        if inner is not None:
            return dict(inner)
        return {"mode": self.mode, "state": "loaded"} if self.mode else None

    def models(self) -> list[ModelCard]:
        """The catalog card."""
        return [self.card]

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """The inner backend's generation."""
        return self.inner.generate(request)

    def embed(self, request: EmbeddingRequest) -> AsyncIterator[EmbeddingEvent]:
        """The inner backend's embedding."""
        return self.inner.embed(request)

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """The inner backend's count."""
        return await self.inner.count_tokens(request)

    async def health(self) -> dict[str, Any]:
        """The inner backend's health."""
        return await self.inner.health()

    async def aclose(self) -> None:
        """Close the inner backend."""
        await self.inner.aclose()
