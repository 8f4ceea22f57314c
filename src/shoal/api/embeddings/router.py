"""HTTP route of ``POST /v1/embeddings``: the ``embed`` operation through the one request path.

Keys, model scopes, rate limits, budgets, routing, failover and metering are the
pipeline's, exactly as for a generation; only the body and the answer differ.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from array import array

from fastapi import APIRouter, Request
from fastapi.responses import Response

from shoal import sse
from shoal.api.deps import authenticated, context, log_ignored, read_body, services
from shoal.core.embeddings import EmbeddingRequest, Vectors
from shoal.core.generation import Generation
from shoal.core.types import Finish, Usage
from shoal.errors import BackendError
from shoal.protocol.embeddings import EmbeddingsRequest

router = APIRouter()

INLINE_FLOATS = 65_536
"""Answers with more floats than this are encoded on a worker thread, off the event loop."""


async def create_embedding(request: Request) -> Response:
    """Create embeddings (the body is an :class:`EmbeddingsRequest`)."""
    await authenticated(request)
    body = await read_body(request, EmbeddingsRequest)
    log_ignored(body, "embeddings")
    operation = EmbeddingRequest(model=body.model, inputs=body.inputs(), dimensions=body.dimensions,
                                 user=body.user)
    run = await services(request).pipeline.start(operation, context(request))
    try:
        vectors, usage = await _collect(run)
    finally:
        await run.aclose()
    size = sum(len(v) for v in vectors)
    if size > INLINE_FLOATS:
        payload = await asyncio.to_thread(_answer, vectors, usage, run.model, body.encoding_format)
    else:
        payload = _answer(vectors, usage, run.model, body.encoding_format)
    return Response(payload, media_type="application/json", headers={"x-shoal-model": run.model})


async def _collect(run: Generation) -> tuple[list[list[float]], Usage]:
    """The vectors and the usage of a finished ``embed`` run."""
    vectors: list[list[float]] | None = None
    usage = Usage()
    async for event in run:
        if isinstance(event, Vectors):
            vectors = event.vectors
        elif isinstance(event, Finish):
            usage = event.usage
    if vectors is None:
        raise BackendError("The embedding model returned no vectors.")
    return vectors, usage


def _answer(vectors: list[list[float]], usage: Usage, model: str, encoding: str) -> bytes:
    """OpenAI's list of embeddings: float arrays, or base64 of little-endian float32 (what the SDKs ask for)."""
    data = [{"object": "embedding", "index": i, "embedding": _encoded(v) if encoding == "base64" else v}
            for i, v in enumerate(vectors)]
    return sse.dumps({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}})


def _encoded(vector: list[float]) -> str:
    packed = array("f", vector)
    if sys.byteorder == "big":  # the SDKs decode little-endian float32
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


# A plain route, called straight from the edge (shoal.api.edge); registered here for the router too.
router.add_route("/v1/embeddings", create_embedding, methods=["POST"])
