"""The pipeline: resolve, admit, prime, iterate, always free the slot, record stats."""

from __future__ import annotations

import asyncio

import pytest

from shoal.core.backend import BackendFailure, ModelCard
from shoal.core.admission import Admission
from shoal.core.deployment import Deployment
from shoal.core.generation import to_shoal_error
from shoal.routing.router import Router
from shoal.core.pipeline import Pipeline
from shoal.core.types import Finish, GenerationRequest, Message, ReasoningDelta, TextDelta, Usage
from shoal.errors import BackendError, InvalidRequestError, ModelNotFoundError, OverloadedError
from tests.scripted import CARD, ScriptedBackend, text_script

OTHER = ModelCard(id="other", owned_by="shoal", created=0, context_length=2048, aliases=("o", "test-alias"))


def pipeline(backend: ScriptedBackend, *, slots: int = 1, max_queue: int = 0,
             prime_timeout: float = 5.0) -> Pipeline:
    adm = Admission(slots, max_queue)
    return Pipeline(Router([Deployment(card, backend, adm) for card in backend.models()]), prime_timeout=prime_timeout)


def request(model: str = "test-model") -> GenerationRequest:
    return GenerationRequest(model=model, messages=(Message("user", "hi"),))


def admission(p: Pipeline) -> Admission:
    return p.deployments[0].admission


async def drain(gen) -> list:  # type: ignore[no-untyped-def]
    return [ev async for ev in gen]


def test_resolve_by_id_and_alias_first_wins() -> None:
    p = pipeline(ScriptedBackend(cards=[CARD, OTHER]))
    assert p.resolve("test-model").card is CARD
    assert p.resolve("other").card is OTHER
    assert p.resolve("o").card is OTHER
    assert p.resolve("test-alias").card is CARD  # configured first
    assert [c.id for c in p.cards()] == ["test-model", "other"]


def test_unknown_model_is_404_naming_it() -> None:
    p = pipeline(ScriptedBackend())
    with pytest.raises(ModelNotFoundError) as info:
        p.resolve("nope")
    assert info.value.status_code == 404
    assert info.value.param == "model"
    assert "nope" in info.value.message


async def test_start_unknown_model_takes_no_slot() -> None:
    p = pipeline(ScriptedBackend())
    with pytest.raises(ModelNotFoundError):
        await p.start(request("nope"))
    assert admission(p).running == 0


async def test_completed_generation_frees_slot_and_records_usage() -> None:
    backend = ScriptedBackend(text_script("a", "b", usage=Usage(7, 2, cached_tokens=3)))
    p = pipeline(backend)
    gen = await p.start(request("test-alias"))
    assert gen.model == "test-model"
    assert admission(p).running == 1
    events = await drain(gen)
    await gen.aclose()
    assert [type(e) for e in events] == [TextDelta, TextDelta, Finish]
    assert admission(p).running == 0
    assert gen.stats.status == "completed"
    assert gen.stats.usage == Usage(7, 2, cached_tokens=3)
    assert gen.stats.ttft_ms is not None and gen.stats.finished is not None
    assert backend.requests[0].model == "test-alias"
    assert backend.finished == [True] and backend.closed_early == [False]


async def test_length_finish_is_incomplete() -> None:
    p = pipeline(ScriptedBackend(text_script("a", reason="length")))
    gen = await p.start(request())
    await drain(gen)
    await gen.aclose()
    assert gen.stats.status == "incomplete"


@pytest.mark.parametrize(("failure", "cls", "status", "code"), [
    (BackendFailure("prompt too long", client_error=True, code="context_length_exceeded"),
     InvalidRequestError, 400, "context_length_exceeded"),
    (BackendFailure("engine crashed"), BackendError, 502, "backend_error"),
    (RuntimeError("boom"), BackendError, 502, "backend_error"),
])
async def test_early_failure_is_raised_by_start_and_frees_slot(failure, cls, status, code) -> None:  # type: ignore[no-untyped-def]
    backend = ScriptedBackend([failure])
    p = pipeline(backend)
    with pytest.raises(cls) as info:
        await p.start(request())
    assert info.value.status_code == status
    assert info.value.code == code
    assert admission(p).running == 0
    # The slot really is free: a second request runs.
    gen = await p.start(request())
    await drain(gen)
    await gen.aclose()
    assert admission(p).running == 0


async def test_early_failure_is_logged_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    p = pipeline(ScriptedBackend([BackendFailure("x")]))
    with caplog.at_level("INFO", logger="shoal.requests"), pytest.raises(BackendError):
        await p.start(request())
    lines = [r.getMessage() for r in caplog.records if r.name == "shoal.requests"]
    assert len(lines) == 1 and "status=failed" in lines[0]


async def test_failure_mid_stream_is_mapped_and_marked_failed() -> None:
    backend = ScriptedBackend([TextDelta("a"), TextDelta("b"), BackendFailure("lost upstream")])
    p = pipeline(backend)
    gen = await p.start(request())
    got = []
    with pytest.raises(BackendError) as info:
        async for ev in gen:
            got.append(ev)
    await gen.aclose()
    assert info.value.message == "lost upstream"
    assert len(got) == 2
    assert gen.stats.status == "failed"
    assert gen.stats.usage.output_tokens == 2  # counted from the streamed deltas
    assert admission(p).running == 0


async def test_consumer_closing_early_cancels_backend_and_frees_slot() -> None:
    never = asyncio.Event()
    backend = ScriptedBackend([ReasoningDelta("hm"), TextDelta("a"), never, TextDelta("b")])
    p = pipeline(backend)
    gen = await p.start(request())
    it = gen.__aiter__()
    assert isinstance(await it.__anext__(), ReasoningDelta)
    assert isinstance(await it.__anext__(), TextDelta)
    await it.aclose()
    await gen.aclose()
    assert backend.closed_early == [True]
    assert admission(p).running == 0
    assert gen.stats.status == "cancelled"
    assert gen.stats.usage.output_tokens == 2


async def test_aclose_without_iterating_cancels_and_is_idempotent() -> None:
    backend = ScriptedBackend(text_script("a", "b"))
    p = pipeline(backend, slots=1, max_queue=1)
    gen = await p.start(request())
    await gen.aclose()
    await gen.aclose()
    assert admission(p).running == 0  # released once, not twice (would go negative)
    assert gen.stats.status == "cancelled"
    assert backend.closed_early == [True]


async def test_slow_first_event_is_not_an_error() -> None:
    go = asyncio.Event()
    backend = ScriptedBackend([go, *text_script("late")])
    p = pipeline(backend, prime_timeout=0.01)
    gen = await p.start(request())  # returns after the prime timeout
    asyncio.get_running_loop().call_later(0.01, go.set)
    events = await drain(gen)
    await gen.aclose()
    assert [type(e) for e in events] == [TextDelta, Finish]
    assert gen.stats.status == "completed"
    assert admission(p).running == 0


async def test_slow_first_event_then_close_cancels_pending_read() -> None:
    backend = ScriptedBackend([asyncio.Event(), *text_script("never")])
    p = pipeline(backend, prime_timeout=0.01)
    gen = await p.start(request())
    await gen.aclose()
    assert backend.closed_early == [True]
    assert admission(p).running == 0


async def test_empty_stream_after_slow_start() -> None:
    go = asyncio.Event()
    backend = ScriptedBackend([go])
    p = pipeline(backend, prime_timeout=0.01)
    gen = await p.start(request())
    go.set()
    assert await drain(gen) == []
    await gen.aclose()
    assert admission(p).running == 0


async def test_start_cancelled_while_priming_frees_slot() -> None:
    backend = ScriptedBackend([asyncio.Event()])
    p = pipeline(backend, prime_timeout=10)
    task = asyncio.ensure_future(p.start(request()))
    await asyncio.sleep(0.01)
    assert admission(p).running == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert admission(p).running == 0
    assert backend.closed_early == [True]


async def test_full_queue_is_503() -> None:
    backend = ScriptedBackend(text_script("a"))
    p = pipeline(backend, slots=1, max_queue=0)
    gen = await p.start(request())
    with pytest.raises(OverloadedError):
        await p.start(request())
    await gen.aclose()
    assert admission(p).running == 0


async def test_queued_request_runs_when_slot_frees() -> None:
    backend = ScriptedBackend(text_script("a"), text_script("b"))
    p = pipeline(backend, slots=1, max_queue=1)
    first = await p.start(request())
    second_task = asyncio.ensure_future(p.start(request()))
    await asyncio.sleep(0.01)
    assert not second_task.done() and admission(p).queued == 1
    await drain(first)
    await first.aclose()
    second = await asyncio.wait_for(second_task, 1)
    events = await drain(second)
    await second.aclose()
    assert events[0] == TextDelta("b")
    assert admission(p).running == 0


async def test_pipeline_aclose_closes_backends() -> None:
    backend = ScriptedBackend()
    p = pipeline(backend)
    await p.aclose()
    assert backend.closed


def test_to_shoal_error_passes_shoal_errors_through() -> None:
    err = InvalidRequestError("x", param="y")
    assert to_shoal_error(err) is err
    mapped = to_shoal_error(BackendFailure("bad", client_error=True))
    assert isinstance(mapped, InvalidRequestError) and mapped.message == "bad"


# -- caller scope and hooks ------------------------------------------------------------------

def test_context_scopes_the_catalog() -> None:
    from shoal.core.context import RequestContext

    p = pipeline(ScriptedBackend(cards=[CARD, OTHER]))
    ctx = RequestContext(allowed_models=frozenset({"other"}))
    assert [c.id for c in p.cards(ctx)] == ["other"]
    assert p.resolve("o", ctx).card is OTHER
    with pytest.raises(ModelNotFoundError):
        p.resolve("test-model", ctx)
    with pytest.raises(ModelNotFoundError):
        p.resolve("test-alias", ctx)


class Hooks:
    def __init__(self) -> None:
        self.admitted = 0
        self.finished: list[tuple[int, str]] = []

    async def admit(self, request, context, deployment):  # type: ignore[no-untyped-def]
        self.admitted += 1
        return self.admitted

    async def finish(self, context, deployment, stats, token) -> None:  # type: ignore[no-untyped-def]
        self.finished.append((token, stats.status))


def hooked(backend: ScriptedBackend, hooks: Hooks, **kw) -> Pipeline:  # type: ignore[no-untyped-def]
    p = pipeline(backend, **kw)
    return Pipeline(Router(p.deployments), prime_timeout=p.prime_timeout, hooks=hooks)


async def test_hooks_finish_once_per_generation() -> None:
    hooks = Hooks()
    backend = ScriptedBackend(text_script("a"), [BackendFailure("x")], [TextDelta("a"), asyncio.Event()])
    p = hooked(backend, hooks)
    gen = await p.start(request())
    await drain(gen)
    await gen.aclose()
    await gen.aclose()
    with pytest.raises(BackendError):
        await p.start(request())
    gen = await p.start(request())
    await gen.aclose()
    assert hooks.finished == [(1, "completed"), (2, "failed"), (3, "cancelled")]


async def test_hooks_told_of_a_rejected_request() -> None:
    hooks = Hooks()
    p = hooked(ScriptedBackend(text_script("a")), hooks, max_queue=0)
    gen = await p.start(request())
    with pytest.raises(OverloadedError):
        await p.start(request())
    await gen.aclose()
    assert hooks.finished == [(2, "rejected"), (1, "cancelled")]


class RaisingBackend(ScriptedBackend):
    def generate(self, request):  # type: ignore[no-untyped-def]
        raise BackendFailure("cannot start")


async def test_generate_raising_at_once_is_mapped_and_finished() -> None:
    hooks = Hooks()
    p = hooked(RaisingBackend(), hooks)
    with pytest.raises(BackendError):
        await p.start(request())
    assert admission(p).running == 0
    assert hooks.finished == [(1, "failed")]
