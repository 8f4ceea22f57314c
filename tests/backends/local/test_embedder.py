"""The local embedding engine on the real SmolLM2-135M GGUF (fetched once by Shoal's own fetcher)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Iterator

import pytest

from shoal.core.backend import BackendFailure
from shoal.backends.local.embedder import MAX_INPUTS, LocalEmbedder, LocalEmbedderConfig
from shoal.backends.local.packaged import EMBED, default_cache_dir, find_packaged_model, resolve_model_path

pytestmark = pytest.mark.slow


def _config(**overrides: object) -> LocalEmbedderConfig:
    model = find_packaged_model("smollm2-135m")
    assert model is not None and model.supports(EMBED) and model.embedding is not None
    path, _ = resolve_model_path(model.name, default_cache_dir())
    fields: dict[str, object] = dict(
        model_id="smollm2-embed", path=path, dimensions=model.embedding.dimensions,
        pooling=model.embedding.pooling, matryoshka_dimensions=model.embedding.matryoshka_dimensions,
        parallel=4, ctx_per_slot=256, threads=2,
    )
    fields.update(overrides)
    return LocalEmbedderConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    engine = LocalEmbedder(_config())
    engine.load()
    yield engine
    asyncio.run(engine.aclose())


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


async def test_related_sentences_are_closer_than_unrelated(embedder: LocalEmbedder) -> None:
    cat, kitten, revenue, bread, sourdough = (await embedder.vectors([
        "The cat sat on the mat.", "A kitten is resting on the rug.", "Quarterly revenue rose by twelve percent.",
        "How do I bake sourdough bread?", "Recipe for making a sourdough loaf",
    ])).vectors
    assert _cos(cat, kitten) > _cos(cat, revenue) + 0.1
    assert _cos(cat, kitten) > _cos(cat, bread) + 0.1
    assert _cos(bread, sourdough) > _cos(bread, revenue) + 0.05
    assert _cos(bread, sourdough) > _cos(sourdough, kitten) + 0.05


async def test_vectors_are_unit_length_of_the_model_size_and_tokens_counted(embedder: LocalEmbedder) -> None:
    result = await embedder.vectors(["hello world", "a rather longer sentence about nothing in particular"])
    assert [len(v) for v in result.vectors] == [576, 576]
    for v in result.vectors:
        assert _norm(v) == pytest.approx(1.0, abs=1e-5)
    single = await embedder.vectors(["hello world"])
    assert 0 < single.prompt_tokens < result.prompt_tokens


async def test_batch_of_32_equals_32_singles(embedder: LocalEmbedder) -> None:
    texts = [f"sentence {i}: " + " ".join(["alpha", "beta", "gamma", "delta"][: 1 + i % 4]) * (1 + i % 3)
             for i in range(32)]
    batch = await embedder.vectors(texts)
    singles = [(await embedder.vectors([t])).vectors[0] for t in texts]
    assert len(batch.vectors) == 32
    worst = max(abs(x - y) for b, s in zip(batch.vectors, singles, strict=True) for x, y in zip(b, s, strict=True))
    # A per-slot KV cache made this ~0.1 (wrong vectors); float rounding is ~1e-7.
    assert worst < 1e-4


async def test_concurrent_requests_each_get_their_own_vectors(embedder: LocalEmbedder) -> None:
    texts = ["first request text", "second request, different words", "third: yet another sentence"]
    alone = [(await embedder.vectors([t])).vectors[0] for t in texts]
    together = await asyncio.gather(*(embedder.vectors([t]) for t in texts))
    for one, res in zip(alone, together, strict=True):
        assert max(abs(x - y) for x, y in zip(one, res.vectors[0], strict=True)) < 1e-4


async def test_token_arrays_embed_like_their_text(embedder: LocalEmbedder) -> None:
    import httpx

    # The model's own tokenizer, on llama.cpp's loopback port.
    async with httpx.AsyncClient(base_url=str(embedder._server.listening_address),
                                 headers={"Authorization": f"Bearer {embedder._http_api_key}"}) as http:
        reply = await http.post("/tokenize", json={"content": "The cat sat on the mat."})
    tokens = reply.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    from_text = await embedder.vectors(["The cat sat on the mat."])
    from_ids = await embedder.vectors([tokens, tokens[:3]])
    assert from_ids.prompt_tokens == len(tokens) + 3
    assert max(abs(x - y) for x, y in zip(from_text.vectors[0], from_ids.vectors[0], strict=True)) < 1e-4
    assert _cos(from_ids.vectors[0], from_ids.vectors[1]) < 0.999


async def test_dimensions_other_than_native_are_refused_without_matryoshka(embedder: LocalEmbedder) -> None:
    assert (await embedder.vectors(["x y"], dimensions=576)).vectors[0].__len__() == 576
    with pytest.raises(BackendFailure) as info:
        await embedder.vectors(["x y"], dimensions=256)
    assert info.value.client_error and "dimensions=256" in info.value.message


async def test_matryoshka_truncates_and_renormalises(embedder: LocalEmbedder) -> None:
    # The same loaded engine, declared Matryoshka-capable: only the post-processing is under test.
    declared = LocalEmbedder(dataclasses.replace(embedder.config, matryoshka_dimensions=(64,)))
    declared._server = embedder._server
    full = (await embedder.vectors(["truncate me"])).vectors[0]
    short = (await declared.vectors(["truncate me"], dimensions=64)).vectors[0]
    assert len(short) == 64 and _norm(short) == pytest.approx(1.0, abs=1e-6)
    scale = _norm(full[:64])
    assert short == pytest.approx([x / scale for x in full[:64]], abs=1e-6)
    declared._executor.shutdown(wait=False)


@pytest.mark.parametrize("bad", [[], [""], [[]], ["a", [1, 2]], [[1, -2]], [[1.5]], [True], "a string"])
async def test_bad_inputs_are_client_errors(embedder: LocalEmbedder, bad: object) -> None:
    with pytest.raises(BackendFailure) as info:
        await embedder.vectors(bad)  # type: ignore[arg-type]
    assert info.value.client_error


async def test_too_many_inputs_are_refused(embedder: LocalEmbedder) -> None:
    with pytest.raises(BackendFailure, match=str(MAX_INPUTS)) as info:
        await embedder.vectors(["x"] * (MAX_INPUTS + 1))
    assert info.value.client_error


async def test_llama_cpp_refusals_become_client_errors(embedder: LocalEmbedder) -> None:
    with pytest.raises(BackendFailure) as info:
        await embedder.vectors([[10**9]])  # not a token of this vocabulary
    assert info.value.client_error
    with pytest.raises(BackendFailure) as info:
        await embedder.vectors(["word " * (embedder.config.max_batch_tokens + 10)])
    assert info.value.client_error and info.value.code == "context_length_exceeded"
    # The engine still serves afterwards.
    assert len((await embedder.vectors(["still alive"])).vectors) == 1


async def test_models_and_health(embedder: LocalEmbedder) -> None:
    (card,) = embedder.models()
    assert card.id == "smollm2-embed" and card.capabilities == ("embeddings",)
    assert card.extra["dimensions"] == 576 and card.extra["matryoshka_dimensions"] == []
    assert (await embedder.health())["status"] == "ok"
    assert embedder.capacity == 4


async def test_unloaded_and_wrong_size_models_fail() -> None:
    cold = LocalEmbedder(_config())
    with pytest.raises(BackendFailure, match="not loaded"):
        await cold.vectors(["x"])
    assert (await cold.health())["status"] == "loading"
    await cold.aclose()
    wrong = LocalEmbedder(_config(dimensions=384, parallel=1))
    with pytest.raises(ValueError, match="576"):
        wrong.load()
    await wrong.aclose()
