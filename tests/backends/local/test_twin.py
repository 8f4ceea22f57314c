"""The speculating twin: its own process, started and ended with the engine; a dead twin loses nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.backends.local.engine import LocalBackend, LocalModelConfig
from shoal.backends.local.packaged import default_cache_dir, resolve_model_path
from shoal.backends.local.speculative import SpeculativeConfig
from shoal.backends.local.twin import SpeculatingTwin, settings_for
from shoal.core.types import Finish, GenerationRequest, Message, SamplingParams, TextDelta

PROMPT = "Repeat exactly: one two three four five six seven eight nine ten. one two three four five six"


def _request() -> GenerationRequest:
    return GenerationRequest(model="m", messages=(Message("user", PROMPT),),
                             sampling=SamplingParams(temperature=0.0, max_tokens=32))


async def _answer(engine: LocalBackend) -> tuple[str, Finish]:
    events = [event async for event in engine.generate(_request())]
    finish = events[-1]
    assert isinstance(finish, Finish)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), finish


def _model() -> Path:
    return resolve_model_path("smollm2-135m-instruct", default_cache_dir())[0]


@pytest.mark.slow
async def test_the_twin_is_its_own_process_and_ends_with_the_engine() -> None:
    engine = LocalBackend(LocalModelConfig(model_id="m", path=_model(), parallel=1, ctx_per_slot=1024, threads=1,
                                           speculative=SpeculativeConfig(kind="ngram", draft_max=8, ngram_size=3)))
    engine.load()
    twin = engine._twin
    assert twin is not None and twin.alive and twin.proc is not None
    assert twin.proc.pid != os.getpid()
    text, finish = await _answer(engine)
    assert text and finish.usage.draft_tokens > 0  # answered by the twin: only it drafts
    await engine.aclose()
    assert twin.proc.poll() is not None, "the twin outlived its engine"


@pytest.mark.slow
async def test_a_dead_twin_sends_requests_to_the_plain_server() -> None:
    engine = LocalBackend(LocalModelConfig(model_id="m", path=_model(), parallel=1, ctx_per_slot=1024, threads=1,
                                           speculative=SpeculativeConfig(kind="ngram", draft_max=8, ngram_size=3)))
    engine.load()
    try:
        before, _ = await _answer(engine)
        twin = engine._twin
        assert twin is not None and twin.proc is not None
        twin.proc.kill()
        twin.proc.wait(timeout=10)
        text, finish = await _answer(engine)
        assert text == before  # temperature 0: the plain server says the same
        assert finish.usage.draft_tokens == 0
    finally:
        await engine.aclose()


def test_a_twin_that_cannot_load_fails_loudly(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"not a gguf file")
    twin = SpeculatingTwin(settings_for(SpeculativeConfig(kind="ngram"), path=bad, model_id="m", ctx_per_slot=256,
                                        threads=1, api_key="k", verbose=False))
    twin.start()
    with pytest.raises(RuntimeError, match="did not start"):
        twin.wait_ready()
    assert twin.proc is not None and twin.proc.poll() is not None
