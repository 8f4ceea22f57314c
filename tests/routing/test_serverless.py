"""Serverless and dedicated local deployments: load on demand, idle unload, a shared memory limit, reservations.

A small fake engine stands in for llama.cpp: its load takes a while (in a
thread, like the real one) and every load and unload is counted.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shoal.app import create_app
from shoal.wiring.services import build_deployments
from shoal.auth.keys import hash_key
from shoal.core.backend import BackendFailure, ModelCard
from shoal.backends.local.serverless import MIB, MemoryPool, ServerlessBackend
from shoal.catalog import Catalog
from shoal.config import Settings
from shoal.core.admission import Admission
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.routing.router import Router
from shoal.core.pipeline import Pipeline
from shoal.core.types import Finish, GenerationEvent, GenerationRequest, Message, SamplingParams, TextDelta, Usage
from shoal.errors import BackendError, ModelNotFoundError, OverloadedError
from shoal.wiring.catalog_card import CatalogCard
from tests.scripted import ScriptedBackend


class Counts:
    """Loads and unloads of every fake engine of one test."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.unloads: list[str] = []


class FakeEngine:
    """A local engine double: ``load`` blocks for ``load_seconds``; ``generate`` may wait on a gate."""

    def __init__(self, model: str, counts: Counts, load_seconds: float = 0.0, gate: asyncio.Event | None = None,
                 fail: bool = False) -> None:
        self.model, self.counts, self.load_seconds, self.gate, self.fail = model, counts, load_seconds, gate, fail

    def load(self) -> float:
        time.sleep(self.load_seconds)
        if self.fail:
            raise RuntimeError("bad file")
        self.counts.loads.append(self.model)
        return self.load_seconds

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        yield TextDelta(f"from {self.model}")
        if self.gate is not None:
            await self.gate.wait()
        yield Finish("stop", Usage(3, 1))

    async def aclose(self) -> None:
        self.counts.unloads.append(self.model)


def card(model_id: str) -> ModelCard:
    return ModelCard(id=model_id, owned_by="t", created=0, context_length=4096)


def serverless(model_id: str, counts: Counts, pool: MemoryPool, *, size_mb: int = 100, idle: float = 60.0,
               load_seconds: float = 0.0, gate: asyncio.Event | None = None, fail: bool = False) -> ServerlessBackend:
    return ServerlessBackend(f"{model_id}/local-0", card(model_id),
                             lambda: FakeEngine(model_id, counts, load_seconds, gate, fail),
                             capacity=4, size=size_mb * MIB, pool=pool, idle_unload_seconds=idle)


def pipeline(*backends: ServerlessBackend | CatalogCard | ScriptedBackend) -> Pipeline:
    deps = []
    for b in backends:
        for c in b.models():
            deps.append(Deployment(c, b, Admission(b.capacity, 8), reserved_for=getattr(b, "reserved_for", None)))
    return Pipeline(Router(deps), retries=0)


def request(model: str) -> GenerationRequest:
    return GenerationRequest(model=model, messages=(Message("user", "hi"),), sampling=SamplingParams(max_tokens=4))


async def ask(p: Pipeline, model: str, context: RequestContext | None = None) -> str:
    generation = await p.start(request(model), context)
    text = ""
    try:
        async for event in generation:
            if isinstance(event, TextDelta):
                text += event.text
    finally:
        await generation.aclose()
    return text


async def test_requests_during_a_load_wait_for_that_one_load() -> None:
    counts = Counts()
    backend = serverless("m", counts, MemoryPool(), load_seconds=0.3)
    p = pipeline(backend)
    assert backend.state == "unloaded" and counts.loads == []
    started = time.perf_counter()
    answers = await asyncio.gather(*(ask(p, "m") for _ in range(3)))
    assert answers == ["from m"] * 3
    assert counts.loads == ["m"]
    assert time.perf_counter() - started < 1.5
    assert backend.state == "loaded" and backend.loads == 1
    assert await ask(p, "m") == "from m" and counts.loads == ["m"]
    await backend.aclose()


async def test_a_caller_giving_up_does_not_cancel_the_load_others_wait_on() -> None:
    counts = Counts()
    backend = serverless("m", counts, MemoryPool(), load_seconds=0.3)
    p = pipeline(backend)
    quitter = asyncio.ensure_future(ask(p, "m"))
    stayer = asyncio.ensure_future(ask(p, "m"))
    await asyncio.sleep(0.05)
    quitter.cancel()
    assert await stayer == "from m"
    assert counts.loads == ["m"]
    await backend.aclose()


async def test_idle_model_unloads_and_reloads_on_the_next_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="shoal.local")
    counts = Counts()
    backend = serverless("m", counts, MemoryPool(), idle=0.2)
    p = pipeline(backend)
    await ask(p, "m")
    await asyncio.sleep(0.1)
    assert backend.state == "loaded"
    await asyncio.sleep(0.35)
    assert backend.state == "unloaded" and counts.unloads == ["m"]
    assert "unloaded m (serverless, idle for 0.2 s)" in caplog.text
    assert "loading m for a request (serverless" in caplog.text and "loaded m in" in caplog.text
    await ask(p, "m")
    assert counts.loads == ["m", "m"] and backend.state == "loaded"
    await backend.aclose()


async def test_no_idle_unload_while_a_request_is_in_flight() -> None:
    counts, gate = Counts(), asyncio.Event()
    backend = serverless("m", counts, MemoryPool(), idle=0.1, gate=gate)
    p = pipeline(backend)
    running = asyncio.ensure_future(ask(p, "m"))
    await asyncio.sleep(0.3)
    assert backend.state == "loaded" and counts.unloads == []
    gate.set()
    await running
    await asyncio.sleep(0.25)
    assert counts.unloads == ["m"]


async def test_memory_limit_evicts_the_least_recently_used_idle_model() -> None:
    counts = Counts()
    pool = MemoryPool(250 * MIB)
    a, b, c = (serverless(m, counts, pool) for m in "abc")
    p = pipeline(a, b, c)
    await ask(p, "a")
    await ask(p, "b")
    await ask(p, "a")  # a is now more recent than b
    assert counts.unloads == []
    await ask(p, "c")
    assert counts.unloads == ["b"]
    assert (a.state, b.state, c.state) == ("loaded", "unloaded", "loaded")
    assert pool.used == 200 * MIB
    for backend in (a, b, c):
        await backend.aclose()


async def test_a_busy_model_is_not_evicted_the_load_waits_then_503s() -> None:
    counts, gate = Counts(), asyncio.Event()
    pool = MemoryPool(150 * MIB, wait_seconds=0.3)
    a = serverless("a", counts, pool, gate=gate)
    b = serverless("b", counts, pool)
    p = pipeline(a, b)
    busy = asyncio.ensure_future(ask(p, "a"))
    await asyncio.sleep(0.05)
    with pytest.raises(OverloadedError) as exc:
        await ask(p, "b")
    assert exc.value.status_code == 503 and exc.value.headers.get("retry-after")
    assert counts.loads == ["a"] and counts.unloads == []
    # Once a is done, b's load evicts it; a request waiting meanwhile gets its answer.
    waiting = asyncio.ensure_future(ask(p, "b"))
    await asyncio.sleep(0.1)
    gate.set()
    assert await busy == "from a"
    assert await waiting == "from b"
    assert counts.unloads == ["a"] and counts.loads == ["a", "b"]
    await a.aclose()
    await b.aclose()


async def test_dedicated_models_count_against_the_limit_and_are_never_evicted() -> None:
    counts = Counts()
    pool = MemoryPool(150 * MIB, wait_seconds=5.0)
    pool.pin("dedicated", 100 * MIB)
    big = serverless("big", counts, pool, size_mb=60)
    started = time.perf_counter()
    with pytest.raises(OverloadedError, match="No room"):
        await ask(pipeline(big), "big")
    assert time.perf_counter() - started < 1.0  # it can never fit: no point waiting
    assert counts.loads == []
    small = serverless("small", counts, pool, size_mb=40)
    assert await ask(pipeline(small), "small") == "from small"


async def test_a_failed_load_fails_its_requests_and_the_next_request_tries_again() -> None:
    counts = Counts()
    backend = serverless("m", counts, MemoryPool(100 * MIB), fail=True, load_seconds=0.1)
    p = pipeline(backend)
    results = await asyncio.gather(ask(p, "m"), ask(p, "m"), return_exceptions=True)
    assert all(isinstance(r, BackendError) and isinstance(r.__cause__, BackendFailure) for r in results)
    assert backend.state == "unloaded" and backend.pool.used == 0
    backend._factory = lambda: FakeEngine("m", counts)
    assert await ask(p, "m") == "from m"


def reserved(model_id: str, name: str, *keys: str, capacity: int = 4, cap: int | None = None) -> CatalogCard:
    c = card(model_id)
    return CatalogCard(ScriptedBackend(cards=[c], name=name, capacity=capacity), c, name, reserved_for=keys,
                       max_concurrency=cap, mode="dedicated")


class Key:
    def __init__(self, name: str) -> None:
        self.name = name


async def test_reserved_deployments_serve_only_their_keys() -> None:
    team = RequestContext(key_id="key_1", key=Key("team-a"))
    other = RequestContext(key_id="key_2", key=Key("team-b"))
    p = pipeline(reserved("solo", "solo/local-0", "team-a"),
                 reserved("shared", "shared/local-0", "key_1"), reserved("shared", "shared/local-1"))
    assert await ask(p, "solo", team) == "ok"
    with pytest.raises(ModelNotFoundError):
        await ask(p, "solo", other)
    with pytest.raises(ModelNotFoundError):
        await ask(p, "solo", RequestContext())
    assert [c.id for c in p.cards(other)] == ["shared"]
    assert [c.id for c in p.cards(team)] == ["solo", "shared"]
    # The same model elsewhere: other keys are routed to the unreserved deployment.
    for _ in range(3):
        assert p.router.plan(request("shared"), other).candidates[0].name == "shared/local-1"
    assert {d.name for d in p.router.plan(request("shared"), team).candidates} == {"shared/local-0", "shared/local-1"}


async def test_max_concurrency_caps_in_flight_requests() -> None:
    gate = asyncio.Event()
    c = card("m")
    inner = ScriptedBackend(*([TextDelta("x"), gate, Finish("stop", Usage(1, 1))] for _ in range(3)),
                            cards=[c], capacity=4)
    capped = CatalogCard(inner, c, "m/local-0", max_concurrency=2)
    assert capped.capacity == 2
    assert CatalogCard(inner, c, max_concurrency=9).capacity == 4
    [dep] = build_deployments(Settings(max_queue=8), [capped])
    assert dep.admission.slots == 2
    p = Pipeline(Router([dep]), retries=0)
    runs = [asyncio.ensure_future(ask(p, "m")) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert (dep.admission.running, dep.admission.queued) == (2, 1)
    gate.set()
    assert await asyncio.gather(*runs) == ["x", "x", "x"]


def test_catalog_fields_and_their_checks() -> None:
    catalog = Catalog.model_validate({"models": [
        {"id": "a", "deployments": [{"type": "local", "path": "/m.gguf", "mode": "serverless",
                                     "idle_unload_seconds": 30, "memory_mb": 200}]},
        {"id": "b", "deployments": [{"type": "local", "path": "/m.gguf", "reserved_for": ["team-a"],
                                     "max_concurrency": 2}]},
    ]})
    a, b = catalog.models[0].deployments[0], catalog.models[1].deployments[0]
    assert (a.mode, a.idle_unload_seconds, a.memory_mb) == ("serverless", 30, 200)
    assert (b.mode, b.reserved_for, b.max_concurrency) == ("dedicated", ("team-a",), 2)
    for bad in ({"mode": "serverless", "reserved_for": ["k"]}, {"idle_unload_seconds": 5}, {"mode": "lazy"}):
        with pytest.raises(ValueError):
            Catalog.model_validate({"models": [{"id": "x", "deployments": [
                {"type": "local", "path": "/m.gguf", **bad}]}]})


def test_models_listing_and_metrics_show_mode_and_state() -> None:
    counts = Counts()
    pool = MemoryPool()
    lazy = CatalogCard(serverless("lazy", counts, pool), card("lazy"), "lazy/local-0", mode="serverless")
    pinned = reserved("pinned", "pinned/local-0", "static:" + hash_key("k1-0123456789abcdef")[:24])
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), api_keys=("k1-0123456789abcdef", "k2-0123456789abcdef")),
                         backend_factory=lambda s: [lazy, pinned])
        with TestClient(app) as client:
            k1, k2 = {"Authorization": "Bearer k1-0123456789abcdef"}, {"Authorization": "Bearer k2-0123456789abcdef"}
            listed = {m["id"]: m for m in client.get("/v1/models", headers=k1).json()["data"]}
            assert listed["lazy"]["deployments"] == [{"name": "lazy/local-0", "mode": "serverless",
                                                      "state": "unloaded", "idle_unload_seconds": 60.0,
                                                      "loads": 0, "unloads": 0}]
            assert listed["pinned"]["deployments"][0]["mode"] == "dedicated"
            assert [m["id"] for m in client.get("/v1/models", headers=k2).json()["data"]] == ["lazy"]
            body = {"model": "lazy", "messages": [{"role": "user", "content": "hi"}]}
            assert client.post("/v1/chat/completions", json=body, headers=k2).status_code == 200
            assert client.get("/v1/models/lazy", headers=k2).json()["deployments"][0]["state"] == "loaded"
            denied = client.post("/v1/chat/completions", json={**body, "model": "pinned"}, headers=k2)
            assert denied.status_code == 404
            assert client.post("/v1/chat/completions", json={**body, "model": "pinned"}, headers=k1).status_code == 200
            metrics = client.get("/metrics").text
            assert 'shoal_model_loaded{deployment="lazy/local-0",model="lazy"} 1.0' in metrics
            assert 'shoal_model_loads_total{deployment="lazy/local-0",model="lazy"} 1.0' in metrics
    assert counts.loads == ["lazy"] and counts.unloads == ["lazy"]
