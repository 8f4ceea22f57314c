"""Failover before the first byte, never after; breaker and retry-after; against scripted loopback upstreams."""

from __future__ import annotations

import time

import pytest

from shoal.core.backend import ModelCard
from shoal.backends.openai_compat import OpenAICompatBackend
from shoal.backends.upstream import Timeouts, UpstreamConfig
from shoal.core.admission import Admission
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.routing.router import Router
from shoal.core.pipeline import Pipeline
from shoal.core.types import Finish, GenerationRequest, Message, SamplingParams, TextDelta
from shoal.errors import BackendError, GatewayTimeoutError, InvalidRequestError, OverloadedError
from tests.upstream_fakes import FakeUpstream, closed_port

CARD = ModelCard(id="m", owned_by="t", created=0, context_length=4096, capabilities=("tools",))
REQUEST = GenerationRequest(model="m", messages=(Message("user", "hi"),), sampling=SamplingParams(max_tokens=4))


def deployment(url: str, name: str, first_byte: float = 2.0) -> Deployment:
    config = UpstreamConfig(base_url=url, model="up", timeouts=Timeouts(connect=1, first_byte=first_byte, read=2))
    return Deployment(CARD, OpenAICompatBackend(name, CARD, config), Admission(4, 4))


async def run(pipeline: Pipeline, context: RequestContext | None = None) -> tuple[str, str]:
    generation = await pipeline.start(REQUEST, context)
    text = ""
    try:
        async for event in generation:
            if isinstance(event, TextDelta):
                text += event.text
    finally:
        await generation.aclose()
    return generation.deployment.name, text


@pytest.mark.parametrize("fault", ["500", "429", "hang", "down"])
async def test_falls_over_to_the_next_deployment_before_the_first_byte(fault: str) -> None:
    async with FakeUpstream(fault) as bad, FakeUpstream() as good:
        url = f"http://127.0.0.1:{closed_port()}/v1" if fault == "down" else bad.url
        first, second = deployment(url, "a", first_byte=0.5), deployment(good.url, "b")
        pipeline = Pipeline(Router([first, second]), retries=0)
        context = RequestContext()
        try:
            started = time.perf_counter()
            served, text = await run(pipeline, context)
            assert (served, text) == ("b", "Hello!")
            assert context.headers["x-shoal-deployment"] == "b"
            assert time.perf_counter() - started < 3
            if fault == "429":
                assert first.breaker.state == "open"  # retry-after honoured: no traffic for 1 s
                assert first.breaker.retry_in() > 0.5
        finally:
            await pipeline.aclose()


async def test_client_errors_are_not_failed_over() -> None:
    async with FakeUpstream("400") as bad, FakeUpstream() as good:
        pipeline = Pipeline(Router([deployment(bad.url, "a"), deployment(good.url, "b")]))
        try:
            with pytest.raises(InvalidRequestError, match="bad temperature"):
                await run(pipeline)
            assert good.bodies == []
        finally:
            await pipeline.aclose()


async def test_a_stream_that_drops_after_content_fails_in_stream_without_failover() -> None:
    async with FakeUpstream("drop") as bad, FakeUpstream() as good:
        pipeline = Pipeline(Router([deployment(bad.url, "a"), deployment(good.url, "b")]))
        try:
            generation = await pipeline.start(REQUEST)
            events = []
            with pytest.raises(BackendError, match="closed the stream"):
                async for event in generation:
                    events.append(event)
            await generation.aclose()
            assert events == [TextDelta("Hel")]
            assert good.bodies == [] and generation.stats.status == "failed"
        finally:
            await pipeline.aclose()


async def test_retries_after_backoff_honouring_retry_after() -> None:
    async with FakeUpstream("429", "ok") as only:
        pipeline = Pipeline(Router([deployment(only.url, "a")]), retries=1, backoff=0.05)
        try:
            started = time.perf_counter()
            assert await run(pipeline) == ("a", "Hello!")
            assert time.perf_counter() - started >= 0.9  # waited the upstream's retry-after: 1
        finally:
            await pipeline.aclose()


async def test_every_deployment_failing_is_an_error_with_the_breaker_open_after() -> None:
    async with FakeUpstream(default="500") as bad:
        dep = deployment(bad.url, "a")
        dep.breaker.threshold = 2
        pipeline = Pipeline(Router([dep]), retries=1, backoff=0.01)
        try:
            with pytest.raises(BackendError, match="HTTP 500"):
                await run(pipeline)
            assert len(bad.bodies) == 2 and dep.breaker.state == "open"
            with pytest.raises(OverloadedError) as info:
                await run(pipeline)
            assert info.value.headers["retry-after"]
            assert len(bad.bodies) == 2  # the open circuit kept the request away
        finally:
            await pipeline.aclose()


async def test_hooks_admit_once_and_finish_once_across_failover() -> None:
    calls: list[str] = []

    class Hooks:
        async def admit(self, request, context, dep):  # type: ignore[no-untyped-def]
            calls.append("admit")

        async def finish(self, context, dep, stats, token):  # type: ignore[no-untyped-def]
            calls.append(f"finish:{dep.name}:{stats.status}")

    async with FakeUpstream("500") as bad, FakeUpstream() as good:
        pipeline = Pipeline(Router([deployment(bad.url, "a"), deployment(good.url, "b")]), hooks=Hooks())
        try:
            await run(pipeline)
        finally:
            await pipeline.aclose()
    assert calls == ["admit", "finish:b:completed"]


async def test_usage_and_finish_come_through() -> None:
    async with FakeUpstream() as good:
        pipeline = Pipeline(Router([deployment(good.url, "a")]))
        try:
            generation = await pipeline.start(REQUEST)
            events = [e async for e in generation]
            await generation.aclose()
        finally:
            await pipeline.aclose()
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert (finish.usage.input_tokens, finish.usage.output_tokens, finish.usage.cached_tokens) == (7, 2, 4)


def test_metrics_and_ready_over_http() -> None:
    from tests.scripted import ScriptedBackend, make_app, text_script
    from shoal.core.types import Usage

    backend = ScriptedBackend(text_script("a", "b", usage=Usage(10, 2, cached_tokens=8)))
    with make_app(backend) as client:
        assert client.get("/ready").json()["status"] == "ready"
        r = client.post("/v1/chat/completions", json={"model": "test-model",
                                                      "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.headers["x-shoal-deployment"] == "scripted"
        text = client.get("/metrics").text
    assert 'shoal_requests_total{deployment="scripted",model="test-model",status="completed"} 1.0' in text
    assert 'shoal_cache_hit_tokens_total{deployment="scripted",model="test-model"} 8.0' in text
    assert "shoal_time_to_first_token_seconds_bucket" in text and "shoal_queue_depth" in text


async def test_a_deadline_bounds_failover_over_hanging_deployments() -> None:
    """Six hanging upstreams at 1 s each would take 6 s: the 2.5 s deadline ends it with a 504."""
    async with FakeUpstream(default="hang") as hanging:
        deps = [deployment(hanging.url, f"h{i}", first_byte=1.0) for i in range(6)]
        pipeline = Pipeline(Router(deps), retries=1, backoff=0.01, deadline=2.5)
        try:
            started = time.perf_counter()
            with pytest.raises(GatewayTimeoutError) as info:
                await run(pipeline)
            took = time.perf_counter() - started
            assert 2.4 < took < 3.5
            err = info.value
            assert err.status_code == 504 and err.code == "upstream_timeout" and "deadline 2.5 s" in err.message
            assert 2 <= len(hanging.bodies) <= 3
            assert all(dep.admission.running == 0 for dep in deps)
        finally:
            await pipeline.aclose()


async def test_every_deployment_timing_out_is_a_504_and_errors_stay_502() -> None:
    async with FakeUpstream(default="hang") as hanging, FakeUpstream(default="500") as failing:
        timing_out = Pipeline(Router([deployment(hanging.url, "a", first_byte=0.3),
                               deployment(hanging.url, "b", first_byte=0.3)]), retries=0)
        erroring = Pipeline(Router([deployment(hanging.url, "a", first_byte=0.3), deployment(failing.url, "b")]), retries=0)
        try:
            with pytest.raises(GatewayTimeoutError, match="tried 2 time"):
                await run(timing_out)
            with pytest.raises(BackendError, match="HTTP 500") as info:
                await run(erroring)
            assert info.value.status_code == 502
        finally:
            await timing_out.aclose()
            await erroring.aclose()
