"""Serves one catalog embedding model from an OpenAI-compatible ``/embeddings`` upstream (vLLM, OpenAI, ...)."""

from __future__ import annotations

import base64
import time
from array import array
from collections.abc import AsyncIterator
from typing import Any

from shoal.backends.upstream import UpstreamConfig, UpstreamHTTP, dropped
from shoal.core.backend import BaseBackend, ModelCard
from shoal.core.embeddings import EMBED, EmbeddingEvent, EmbeddingRequest, Vectors
from shoal.core.types import Finish, GenerationEvent, GenerationRequest, Usage


class OpenAIEmbeddingsBackend(BaseBackend):
    """Relays ``embed`` to ``POST {base_url}/embeddings``; upstream failures become ``BackendFailure``."""

    operations = frozenset({EMBED})

    def __init__(self, name: str, card: ModelCard, config: UpstreamConfig, capacity: int = 64) -> None:
        self.name = name
        self.capacity = capacity
        self.card = card
        self.config = config
        self.http = UpstreamHTTP.bearer(config, name)

    def models(self) -> list[ModelCard]:
        """The catalog model this deployment serves."""
        return [self.card]

    def body(self, request: EmbeddingRequest) -> dict[str, Any]:
        """What to POST: the upstream's model name, the inputs, floats, and ``dimensions`` when asked."""
        body: dict[str, Any] = {**self.config.extra_body, "model": self.config.model,
                                "input": [list(i) if isinstance(i, tuple) else i for i in request.inputs],
                                "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user is not None:
            body["user"] = request.user
        return body

    async def embed(self, request: EmbeddingRequest) -> AsyncIterator[EmbeddingEvent]:
        """The upstream's vectors in input order, then a ``Finish`` with its ``prompt_tokens``."""
        async with self.http.post("embeddings", self.body(request), whole=True) as response:
            answer = await self.http.json_body(response)
        vectors, tokens = self._parse(answer, len(request.inputs))
        yield Vectors(vectors)
        yield Finish("stop", Usage(input_tokens=tokens))

    def _parse(self, answer: Any, count: int) -> tuple[list[list[float]], int]:
        """The vectors (floats, or base64 float32 from an upstream that ignores ``encoding_format``)."""
        try:
            data = sorted(answer["data"], key=lambda item: item["index"])
            vectors = [_floats(item["embedding"]) for item in data]
            usage = answer.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise dropped(self.http.who, "malformed embeddings answer") from exc
        if len(vectors) != count:
            raise dropped(self.http.who, f"{len(vectors)} vectors for {count} inputs")
        return vectors, tokens

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Not served: an embedding model writes no text."""
        raise self.unsupported("text generation")

    async def health(self) -> dict[str, Any]:
        """``ok`` when the upstream lists its models."""
        started = time.perf_counter()
        try:
            await self.http.get_json("models")
        except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
            return {"status": "error", "error": str(exc)}
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()


def _floats(value: Any) -> list[float]:
    if isinstance(value, str):
        return array("f", base64.b64decode(value)).tolist()
    if not isinstance(value, list):
        raise ValueError("an embedding is neither a list nor base64")
    return value
