"""The OpenAI-compatible embeddings upstream, through the one pipeline: body, answers, failures, failover."""

from __future__ import annotations

import base64
from array import array

import pytest

from shoal.backends.openai_embeddings import OpenAIEmbeddingsBackend
from shoal.backends.upstream import Timeouts, UpstreamConfig
from shoal.core.admission import Admission
from shoal.core.backend import ModelCard
from shoal.core.deployment import Deployment
from shoal.core.embeddings import EmbeddingRequest, Vectors
from shoal.core.pipeline import Pipeline
from shoal.core.types import Finish, GenerationRequest, Message
from shoal.errors import BackendError, InvalidRequestError
from shoal.routing.router import Router
from tests.upstream_fakes import FakeUpstream

CARD = ModelCard(id="e", owned_by="t", created=0, context_length=512, capabilities=("embeddings",))


def answer(*vectors: list[float], tokens: int = 5, base64_floats: bool = False) -> dict[str, object]:
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(array("f", v).tobytes()).decode() if base64_floats else v}
            for i, v in enumerate(vectors)]
    data.reverse()  # an upstream may answer out of order; the index says where each goes
    return {"object": "list", "data": data, "model": "up", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def deployment(url: str, name: str) -> Deployment:
    config = UpstreamConfig(base_url=url, model="up-embed", timeouts=Timeouts(connect=1, first_byte=2, read=2))
    return Deployment(CARD, OpenAIEmbeddingsBackend(name, CARD, config), Admission(4, 4))


async def embed(pipeline: Pipeline, request: EmbeddingRequest) -> tuple[str, list[list[float]], int]:
    run = await pipeline.start(request)
    vectors: list[list[float]] = []
    tokens = -1
    try:
        async for event in run:
            if isinstance(event, Vectors):
                vectors = event.vectors
            elif isinstance(event, Finish):
                tokens = event.usage.input_tokens
    finally:
        await run.aclose()
    return run.deployment.name, vectors, tokens


@pytest.mark.parametrize("encoded", [False, True])
async def test_vectors_in_input_order_and_the_upstream_body(encoded: bool) -> None:
    async with FakeUpstream(answer([1.0, 0.0], [0.0, 1.0], base64_floats=encoded)) as up:
        pipeline = Pipeline(Router([deployment(up.url, "a")]))
        request = EmbeddingRequest(model="e", inputs=("one", "two"), dimensions=2, user="u1")
        name, vectors, tokens = await embed(pipeline, request)
        await pipeline.aclose()
    assert (name, vectors, tokens) == ("a", [[1.0, 0.0], [0.0, 1.0]], 5)
    assert up.paths == ["/v1/embeddings"]
    assert up.bodies == [{"model": "up-embed", "input": ["one", "two"], "encoding_format": "float",
                          "dimensions": 2, "user": "u1"}]


async def test_token_arrays_go_as_lists() -> None:
    async with FakeUpstream(answer([1.0])) as up:
        pipeline = Pipeline(Router([deployment(up.url, "a")]))
        await embed(pipeline, EmbeddingRequest(model="e", inputs=((1, 2, 3),)))
        await pipeline.aclose()
    assert up.bodies[0]["input"] == [[1, 2, 3]]


async def test_a_failing_upstream_fails_over_before_anything_is_answered() -> None:
    async with FakeUpstream("500") as bad, FakeUpstream(answer([0.5])) as good:
        pipeline = Pipeline(Router([deployment(bad.url, "a"), deployment(good.url, "b")]), retries=0)
        name, vectors, _ = await embed(pipeline, EmbeddingRequest(model="e", inputs=("x",)))
        await pipeline.aclose()
    assert (name, vectors) == ("b", [[0.5]])


async def test_upstream_errors_and_malformed_answers() -> None:
    async with FakeUpstream("400", {"object": "list", "data": [{"index": 0}]}, answer([1.0], [2.0])) as up:
        pipeline = Pipeline(Router([deployment(up.url, "a")]), retries=0)
        with pytest.raises(InvalidRequestError):
            await embed(pipeline, EmbeddingRequest(model="e", inputs=("x",)))
        with pytest.raises(BackendError, match="malformed"):
            await embed(pipeline, EmbeddingRequest(model="e", inputs=("x",)))
        with pytest.raises(BackendError, match="2 vectors for 1 inputs"):
            await embed(pipeline, EmbeddingRequest(model="e", inputs=("x",)))
        await pipeline.aclose()


async def test_a_generation_never_goes_to_an_embedding_model() -> None:
    pipeline = Pipeline(Router([deployment("http://127.0.0.1:9/v1", "a")]))
    with pytest.raises(InvalidRequestError, match="serves embed, not generate"):
        await pipeline.start(GenerationRequest(model="e", messages=(Message("user", "hi"),)))
    await pipeline.aclose()
