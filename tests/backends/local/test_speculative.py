"""Speculative decoding in the local engine: config mapping, the gate, and real drafting on SmolLM2-135M.

SmolLM2-135M is the smallest packaged model, so it drafts for itself: the drafts are
mostly accepted, which is what a test of "drafting changes nothing at temperature 0" wants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import xllamacpp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from shoal.backends.local.engine import LocalBackend, LocalModelConfig
from shoal.backends.local.packaged import default_cache_dir, resolve_model_path
from shoal.backends.local.speculative import SpeculationGate, SpeculativeConfig, apply_speculative, draft_counts
from shoal.catalog import LocalDeployment
from shoal.core.types import Finish, GenerationRequest, Message, SamplingParams, TextDelta
from shoal.metrics import Metrics
from shoal.wiring.local import estimated_size, speculative_config
from tests.speculation import REPEAT_CODE

KINDS = xllamacpp.common_speculative_type


# --------------------------------------------------------------------------- config mapping


def test_a_draft_model_maps_onto_llama_cpp_draft_settings(tmp_path: Path) -> None:
    params = xllamacpp.CommonParams()
    draft = tmp_path / "draft.gguf"
    apply_speculative(params, SpeculativeConfig(kind="draft", draft_path=draft, draft_max=6, draft_min=2,
                                                p_min=0.5), threads=3)
    spec = params.speculative
    assert spec.types == [KINDS.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
    assert spec.draft.mparams.path == str(draft)
    assert (spec.draft.n_max, spec.draft.n_min, spec.draft.p_min) == (6, 2, 0.5)
    assert (spec.draft.cpuparams.n_threads, spec.draft.cpuparams_batch.n_threads) == (3, 3)
    assert spec.draft.cpuparams.poll == 0


def test_ngram_lookup_maps_onto_the_stateless_ngram_search_and_loads_no_model() -> None:
    params = xllamacpp.CommonParams()
    apply_speculative(params, SpeculativeConfig(kind="ngram", draft_max=24, ngram_size=5), threads=2)
    spec = params.speculative
    assert spec.types == [KINDS.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
    assert (spec.ngram_simple.size_n, spec.ngram_simple.size_m) == (5, 24)
    assert spec.draft.mparams.path == ""


def test_a_draft_model_kind_needs_its_model() -> None:
    with pytest.raises(ValueError, match="draft model"):
        apply_speculative(xllamacpp.CommonParams(), SpeculativeConfig(kind="draft"), threads=1)


def test_catalog_fields_become_engine_config() -> None:
    cache = default_cache_dir()
    resolve_model_path("smollm2-135m-instruct", cache)  # fetched once by Shoal's own fetcher
    ngram = speculative_config(LocalDeployment(type="local", packaged="smollm2-135m-instruct", draft="ngram",
                                               draft_max=12, draft_min_acceptance=0.5), cache, 4)
    # By default the speculating server has all the slots: both servers never compete for the cores.
    assert ngram == SpeculativeConfig(kind="ngram", draft_max=12, min_acceptance=0.5, max_streams=4)
    default = speculative_config(LocalDeployment(type="local", packaged="smollm2-135m-instruct", draft="ngram"),
                                 cache, 2)
    assert default is not None and (default.draft_max, default.ngram_size) == (64, 16)
    keyed = speculative_config(LocalDeployment(type="local", packaged="smollm2-135m-instruct", draft="ngram",
                                               draft_ngram_size=8), cache, 2)
    assert keyed is not None and keyed.ngram_size == 8
    model = speculative_config(LocalDeployment(type="local", packaged="smollm2-135m-instruct",
                                               draft="smollm2-135m", draft_min=1, draft_max_streams=2), cache, 4)
    assert model is not None and model.kind == "draft" and model.draft_path is not None
    assert model.draft_path.name == "smollm2-135m-instruct-q4_1.gguf"
    assert (model.draft_max, model.draft_min, model.max_streams) == (8, 1, 2)
    capped = speculative_config(LocalDeployment(type="local", packaged="smollm2-135m-instruct", draft="ngram",
                                                draft_max_streams=9), cache, 4)
    assert capped is not None and capped.max_streams == 4
    assert speculative_config(LocalDeployment(type="local", packaged="smollm2-135m-instruct"), cache, 4) is None
    # A speculating deployment runs a second server and the draft model: both count against memory.
    size = model.draft_path.stat().st_size
    assert estimated_size(model.draft_path, model) == 3 * size
    assert estimated_size(model.draft_path, ngram) == 2 * size
    assert estimated_size(model.draft_path, None) == size


@pytest.mark.parametrize(("fields", "message"), [
    ({"draft_max": 4}, "need draft"),
    ({"draft": "ngram", "draft_min": 2}, "draft_min is for a draft model"),
    ({"draft": "m.gguf", "draft_min": 9, "draft_max": 4}, "draft_min must not exceed draft_max"),
    ({"draft": "ngram", "draft_max": 0}, "greater than or equal to 1"),
    ({"draft": "ngram", "draft_min_acceptance": 1.5}, "less than or equal to 1"),
    ({"draft": "m.gguf", "draft_ngram_size": 8}, "draft_ngram_size is for n-gram lookup"),
    ({"draft": "ngram", "draft_ngram_size": 1}, "greater than or equal to 2"),
    ({"draft_ngram_size": 8}, "need draft"),
])
def test_bad_speculation_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LocalDeployment(type="local", path="m.gguf", **fields)  # type: ignore[arg-type]


def test_draft_counts_come_from_llama_cpp_timings() -> None:
    assert draft_counts({"predicted_n": 9, "draft_n": 12, "draft_n_accepted": 7}) == (12, 7)
    assert draft_counts({"predicted_n": 9}) == (0, 0)
    assert draft_counts(None) == (0, 0)


# --------------------------------------------------------------------------- the gate


def test_the_gate_turns_off_at_low_acceptance_and_probes_again() -> None:
    gate = SpeculationGate(SpeculativeConfig(kind="ngram", draft_max=8, min_acceptance=0.4, probe_every=3))
    assert gate.choose(running=0)  # nothing measured yet: try
    gate.record(drafted=8, accepted=1)
    assert gate.enabled, "one wasted draft must not switch speculation off"
    for _ in range(3):
        gate.record(drafted=8, accepted=1)
    assert not gate.enabled
    assert [gate.choose(running=0) for _ in range(6)] == [False, False, True, False, False, True]
    for _ in range(6):
        gate.record(drafted=8, accepted=8)
    assert gate.enabled and gate.choose(running=0)
    assert (gate.drafted, gate.accepted) == (80, 52)


def test_the_gate_ignores_requests_that_drafted_nothing_and_small_drafts_move_it_little() -> None:
    gate = SpeculationGate(SpeculativeConfig(kind="ngram", draft_max=16, min_acceptance=0.3))
    gate.record(drafted=0, accepted=0)
    assert gate.rate == 1.0
    gate.record(drafted=16, accepted=0)
    after_one = gate.rate
    assert 0.6 < after_one < 0.8 and gate.enabled
    gate.record(drafted=1, accepted=0)
    assert after_one - gate.rate < 0.05 and gate.enabled


def test_the_gate_speculates_only_below_max_streams() -> None:
    gate = SpeculationGate(SpeculativeConfig(kind="ngram", max_streams=2))
    assert gate.choose(running=1)
    assert not gate.choose(running=2)


# --------------------------------------------------------------------------- real drafting


def _engine(model_id: str, speculative: SpeculativeConfig | None) -> LocalBackend:
    path, _ = resolve_model_path("smollm2-135m-instruct", default_cache_dir())
    engine = LocalBackend(LocalModelConfig(model_id=model_id, path=path, parallel=1, ctx_per_slot=1024,
                                           threads=2, speculative=speculative))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, LocalBackend]]:
    path, _ = resolve_model_path("smollm2-135m-instruct", default_cache_dir())
    made = {
        "plain": _engine("plain", None),
        "draft": _engine("draft", SpeculativeConfig(kind="draft", draft_path=path, draft_max=6)),
        "ngram": _engine("ngram", SpeculativeConfig(kind="ngram", draft_max=8, ngram_size=3)),
    }
    yield made
    for engine in made.values():
        asyncio.run(engine.aclose())


def _request(prompt: str) -> GenerationRequest:
    return GenerationRequest(model="m", messages=(Message("user", prompt),),
                             sampling=SamplingParams(temperature=0.0, max_tokens=64))


async def _answer(engine: LocalBackend, request: GenerationRequest) -> tuple[str, Finish]:
    events = [event async for event in engine.generate(request)]
    finish = events[-1]
    assert isinstance(finish, Finish)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), finish


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")  # the engines' HTTP client of the twin lives in one loop
async def test_temperature_zero_output_is_the_same_with_and_without_speculation(
        engines: dict[str, LocalBackend]) -> None:
    # Each engine sees the same prompts in the same order, so their prompt caches match too
    # (a cached prefix is evaluated in a different batch shape, which can move a near-tie).
    prompts = [REPEAT_CODE,
               "Write a Python function that returns the n-th Fibonacci number."]
    for prompt in prompts:
        plain, plain_finish = await _answer(engines["plain"], _request(prompt))
        assert plain_finish.usage.draft_tokens == 0
        for kind in ("draft", "ngram"):
            text, finish = await _answer(engines[kind], _request(prompt))
            assert text == plain, kind
            assert finish.usage.output_tokens == plain_finish.usage.output_tokens
    # The model drafting for itself has most drafts accepted; lookup drafts when the code is repeated.
    draft_gate, ngram_gate = engines["draft"].gate, engines["ngram"].gate
    assert draft_gate is not None and ngram_gate is not None
    assert draft_gate.drafted > 0 and draft_gate.accepted > draft_gate.drafted / 2
    assert ngram_gate.drafted > 0 and 0 < ngram_gate.accepted <= ngram_gate.drafted


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")  # the engines' HTTP client of the twin lives in one loop
async def test_acceptance_counts_reach_usage_metrics_and_health(engines: dict[str, LocalBackend]) -> None:
    engine = engines["draft"]
    _, finish = await _answer(engine, _request("Count from one to twenty in words, comma separated."))
    usage = finish.usage
    assert usage.draft_tokens > 0 and 0 < usage.draft_accepted_tokens <= usage.draft_tokens
    metrics = Metrics()
    stats = SimpleNamespace(status="completed", usage=usage, ttft_ms=5.0, started=1.0, finished=2.0)
    metrics.closed(SimpleNamespace(deployment=SimpleNamespace(card=SimpleNamespace(id="m"), name="m/local-0"),
                                   stats=stats))  # type: ignore[arg-type]
    samples = {(s.name, s.labels.get("outcome")): s.value
               for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples
               if s.name == "shoal_speculative_tokens_total"}
    assert samples == {("shoal_speculative_tokens_total", "drafted"): usage.draft_tokens,
                       ("shoal_speculative_tokens_total", "accepted"): usage.draft_accepted_tokens}
    health = (await engine.health())["speculative"]
    assert health["kind"] == "draft" and health["drafted_tokens"] >= usage.draft_tokens and health["enabled"]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")  # the engines' HTTP client of the twin lives in one loop
async def test_requests_beyond_max_streams_decode_plainly(engines: dict[str, LocalBackend]) -> None:
    engine = engines["draft"]
    started = [engine.generate(_request(f"Name {n} colours.")) for n in (3, 4)]
    first = await anext(started[0])  # the first stream holds the speculating slot
    assert first is not None
    _, second = await _answer_gen(started[1])
    assert second.usage.draft_tokens == 0
    rest = [event async for event in started[0]]
    finish = rest[-1]
    assert isinstance(finish, Finish) and finish.usage.draft_tokens > 0


async def _answer_gen(gen: object) -> tuple[str, Finish]:
    events = [event async for event in gen]  # type: ignore[attr-defined]
    finish = events[-1]
    assert isinstance(finish, Finish)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), finish


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_lookup_drafts_as_much_after_the_slot_answered_something_else() -> None:
    # llama.cpp's n-gram map kept per-slot state across requests and drafted far less on a
    # second prompt; the search Shoal uses has none.
    engine = _engine("lookup", SpeculativeConfig(kind="ngram", draft_max=16, ngram_size=4))
    try:
        repeat = _request(REPEAT_CODE)
        _, fresh = await _answer(engine, repeat)
        await _answer(engine, _request("Write a Python class for a bank account with deposit and withdraw."))
        _, again = await _answer(engine, repeat)
        assert fresh.usage.draft_tokens > fresh.usage.output_tokens / 3
        assert again.usage.draft_tokens >= fresh.usage.draft_tokens * 0.9
    finally:
        await engine.aclose()
