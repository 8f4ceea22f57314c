"""Local embeddings: a GGUF model run by llama.cpp's server in embedding mode, through xllamacpp.

One :class:`LocalEmbedder` serves one model.  A request's inputs go to
llama.cpp in one ``handle_embeddings`` call on a worker thread; llama.cpp
spreads them over its parallel slots and decodes several sequences per batch,
pools each one and L2-normalises it (as OpenAI's vectors are).

The KV cache is *unified* on purpose: with llama.cpp's default per-slot cache,
mean pooling over several sequences decoded in one batch returned wrong vectors
(measured on this xllamacpp build: up to 0.097 away from the same inputs sent
one by one; with a unified cache the difference is float rounding).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.backends.local.params import server_params
from shoal.core.backend import BackendFailure, BaseBackend, ModelCard
from shoal.core.embeddings import EMBED, EMBEDDINGS_CAPABILITY, EmbeddingEvent, EmbeddingRequest, Vectors
from shoal.core.types import Finish, GenerationEvent, GenerationRequest, Usage

MAX_INPUTS = 2048
"""The most inputs one request may carry (OpenAI's limit)."""

_POOLING_NAMES = {"mean": "MEAN", "cls": "CLS", "last": "LAST"}


@dataclass(frozen=True)
class EmbedResult:
    """The vectors of one request, in input order, and the tokens it read."""

    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class LocalEmbedderConfig:
    """How to run one GGUF file as an embedding model."""

    model_id: str
    path: Path
    dimensions: int | None = None
    """The model's native vector size, checked against the model at load (None: learned at load)."""
    pooling: str = "mean"
    matryoshka_dimensions: tuple[int, ...] = ()
    """Shorter sizes the model was trained to be truncated to; others are refused."""
    parallel: int = 4
    ctx_per_slot: int = 512
    threads: int | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    verbose: bool = False

    @property
    def max_batch_tokens(self) -> int:
        """Tokens llama.cpp decodes at once, shared by the slots; also the longest input it accepts."""
        return self.ctx_per_slot * self.parallel


class LocalEmbedder(BaseBackend):
    """Serves embeddings of one GGUF model from this process with llama.cpp."""

    operations = frozenset({EMBED})

    def __init__(self, config: LocalEmbedderConfig) -> None:
        if config.pooling not in _POOLING_NAMES:
            raise ValueError(f"pooling must be one of {sorted(_POOLING_NAMES)}")
        self.config = config
        self.dimensions = config.dimensions
        """The native vector size (known once loaded)."""
        self.name = f"local:{config.model_id}"
        # Requests, not inputs: one request's inputs are batched by llama.cpp itself.
        self.capacity = config.parallel
        self._server: Any = None
        self._executor = ThreadPoolExecutor(max_workers=config.parallel, thread_name_prefix="llama-embed")
        self._created = int(time.time())
        self._load_seconds: float | None = None
        # llama.cpp also listens on loopback; a random key keeps that port closed to everyone else.
        self._http_api_key = secrets.token_urlsafe(24)

    def load(self) -> float:
        """Load the model (blocking) and check its vector size; returns the seconds it took."""
        import xllamacpp

        cfg = self.config
        params = server_params(cfg.path, cfg.model_id, parallel=cfg.parallel, n_ctx=cfg.max_batch_tokens,
                               threads=cfg.threads, api_key=self._http_api_key, verbose=cfg.verbose)
        params.embedding = True
        params.pooling_type = getattr(xllamacpp.llama_pooling_type,
                                      f"LLAMA_POOLING_TYPE_{_POOLING_NAMES[cfg.pooling]}")
        params.embd_normalize = 2  # Euclidean: unit vectors, as OpenAI returns them.
        params.kv_unified = True  # see the module docstring: per-slot caches break batched mean pooling
        # Encoder models must see a whole input in one micro-batch.
        params.n_batch = params.n_ubatch = cfg.max_batch_tokens
        params.cpuparams_batch.poll = 0  # between requests an idle embedder sleeps
        started = time.perf_counter()
        server = xllamacpp.Server(params)
        probe = _call(server, {"input": ["dimension probe"]})
        size = len(probe.vectors[0])
        if cfg.dimensions is not None and size != cfg.dimensions:
            raise ValueError(f"{cfg.path.name} gives {size}-dimensional vectors, not {cfg.dimensions}")
        self.dimensions = size
        self._server = server
        self._load_seconds = time.perf_counter() - started
        return self._load_seconds

    def models(self) -> list[ModelCard]:
        """The one model this embedder serves."""
        cfg = self.config
        return [
            ModelCard(
                id=cfg.model_id,
                owned_by="shoal",
                created=self._created,
                context_length=cfg.max_batch_tokens,
                capabilities=(EMBEDDINGS_CAPABILITY,),
                aliases=cfg.aliases,
                description=cfg.description,
                extra={"engine": "llama.cpp", "file": cfg.path.name, "dimensions": self.dimensions,
                       "matryoshka_dimensions": list(cfg.matryoshka_dimensions), "pooling": cfg.pooling},
            )
        ]

    def supports_dimensions(self, dimensions: int) -> bool:
        """Whether ``dimensions`` can be served: the native size or a trained Matryoshka size."""
        return dimensions == self.dimensions or dimensions in self.config.matryoshka_dimensions

    async def embed(self, request: EmbeddingRequest) -> AsyncIterator[EmbeddingEvent]:
        """The ``embed`` operation: the vectors, then a ``Finish`` with the tokens read."""
        inputs: Any = [list(item) if isinstance(item, tuple) else item for item in request.inputs]
        result = await self.vectors(inputs, request.dimensions)
        yield Vectors(result.vectors)
        yield Finish("stop", Usage(input_tokens=result.prompt_tokens))

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Not served: an embedding model writes no text."""
        raise self.unsupported("text generation")

    async def vectors(self, inputs: list[str] | list[list[int]], dimensions: int | None = None) -> EmbedResult:
        """Unit vectors for ``inputs`` (strings, or token-id arrays), in order.

        ``dimensions`` truncates each vector and renormalises it, for models trained for
        that (Matryoshka).  Bad input raises :class:`BackendFailure` with ``client_error``.
        """
        if self._server is None:
            raise BackendFailure("The local embedding model is not loaded.")
        _check_inputs(inputs)
        if dimensions is not None and not self.supports_dimensions(dimensions):
            allowed = sorted({self.dimensions or 0, *self.config.matryoshka_dimensions} - {0})
            raise BackendFailure(
                f"Model {self.config.model_id!r} does not support dimensions={dimensions}; supported: {allowed}.",
                client_error=True, code="invalid_value")
        body = {"input": inputs, "encoding_format": "float"}
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, _call, self._server, body)
        if dimensions is not None and dimensions != self.dimensions:
            result = EmbedResult([_truncate(v, dimensions) for v in result.vectors], result.prompt_tokens)
        return result

    async def health(self) -> dict[str, Any]:
        """``ok`` once loaded."""
        return {"status": "ok" if self._server is not None else "loading", "load_seconds": self._load_seconds}

    async def aclose(self) -> None:
        """Free the model and the worker threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._server = None


def _check_inputs(inputs: Any) -> None:
    """Refuse what llama.cpp would misread or choke on, before it gets a slot."""
    if not isinstance(inputs, list) or not inputs:
        raise BackendFailure("'input' must be a non-empty list.", client_error=True, code="invalid_value")
    if len(inputs) > MAX_INPUTS:
        raise BackendFailure(f"'input' may hold at most {MAX_INPUTS} items, not {len(inputs)}.",
                             client_error=True, code="invalid_value")
    strings = all(isinstance(item, str) for item in inputs)
    arrays = all(isinstance(item, list) and all(type(t) is int and t >= 0 for t in item) for item in inputs)
    if not (strings or arrays):
        raise BackendFailure("'input' must be all strings or all arrays of non-negative token ids.",
                             client_error=True, code="invalid_value")
    if any(len(item) == 0 for item in inputs):
        raise BackendFailure("'input' must not contain an empty string or an empty token array.",
                             client_error=True, code="invalid_value")


def _call(server: Any, body: dict[str, Any]) -> EmbedResult:
    """One blocking ``handle_embeddings`` call, its reply turned into an :class:`EmbedResult`."""
    try:
        reply = server.handle_embeddings(body)
    except ValueError as exc:
        raise BackendFailure(str(exc), client_error=True) from exc
    if "error" in reply:
        raise _failure(reply["error"])
    data = sorted(reply["data"], key=lambda item: item["index"])
    return EmbedResult([list(item["embedding"]) for item in data], int(reply["usage"]["prompt_tokens"]))


def _truncate(vector: list[float], dimensions: int) -> list[float]:
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


def _failure(error: Any) -> BackendFailure:
    if not isinstance(error, dict):
        return BackendFailure(str(error))
    message = str(error.get("message") or error)
    # llama.cpp says "too large to process" (a 500) when an input outgrows the micro-batch:
    # that is the request's fault, like an input longer than the context.
    if error.get("type") == "exceed_context_size_error" or "too large to process" in message:
        return BackendFailure(message, client_error=True, code="context_length_exceeded")
    if error.get("code") == 400 or error.get("type") == "invalid_request_error":
        return BackendFailure(message, client_error=True)
    return BackendFailure(message)
