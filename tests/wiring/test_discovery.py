"""Replica sets against scripted loopback upstreams: DNS, static lists, health probes, draining, the admin API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.catalog import Catalog
from shoal.core.context import RequestContext
from shoal.core.pipeline import Pipeline
from shoal.core.types import GenerationRequest, Message, SamplingParams, TextDelta
from shoal.errors import ConflictError, InvalidRequestError, ModelNotFoundError, NotFoundError, OverloadedError
from shoal.routing.router import Router
from shoal.wiring import discovery as discovery_module
from shoal.wiring.discovery import Discovery, resolve_dns
from tests.scripted import ScriptedBackend, make_app
from tests.upstream_fakes import FakeUpstream, closed_port

REQUEST = GenerationRequest(model="m", messages=(Message("user", "hi"),), sampling=SamplingParams(max_tokens=4))
FAST = {"interval_seconds": 60, "timeout_seconds": 1, "unhealthy_after": 1}


def catalog(**deployment: Any) -> Catalog:
    return Catalog.model_validate({"models": [{"id": "m", "aliases": ["m-alias"], "deployments": [
        {"type": "openai", "model": "up", "health_check": FAST, **deployment}]}]})


def dead() -> str:
    return f"http://127.0.0.1:{closed_port()}/v1"


async def run(pipeline: Pipeline) -> tuple[str, str]:
    generation = await pipeline.start(REQUEST, RequestContext())
    text = ""
    try:
        async for event in generation:
            if isinstance(event, TextDelta):
                text += event.text
    finally:
        await generation.aclose()
    return generation.deployment.name, text


async def test_static_list_balances_every_replica_each_its_own_deployment() -> None:
    async with FakeUpstream() as a, FakeUpstream() as b:
        router = Router([], expected=Discovery.expected_cards(catalog(base_urls=[a.url, b.url])))
        disc = Discovery(catalog(base_urls=[a.url, b.url]), router, max_queue=4)
        await disc.start()
        try:
            assert [d.name for d in router.deployments] == [f"m/127.0.0.1:{a.port}", f"m/127.0.0.1:{b.port}"]
            assert all(d.up for d in router.deployments)
            assert len({id(d.breaker) for d in router.deployments}) == 2
            pipeline = Pipeline(router)
            served = {name for name, _ in await asyncio.gather(*(run(pipeline) for _ in range(6)))}
            assert len(served) == 2  # fewest outstanding: both get traffic
            assert len(a.bodies) and len(b.bodies)
            assert pipeline.deployments == router.deployments
        finally:
            await disc.aclose()
        assert router.deployments == []


async def test_dns_answers_add_and_remove_replicas() -> None:
    async with FakeUpstream() as up:
        answers: list[list[str]] = [["127.0.0.1"]]

        async def resolver(host: str, port: int) -> list[str]:
            assert (host, port) == ("engine.svc.local", up.port)
            if not answers:
                raise OSError("NXDOMAIN")
            return answers[0]

        spec = {"discover": {"dns": "engine.svc.local", "port": up.port, "interval_seconds": 60}}
        router = Router([], expected=Discovery.expected_cards(catalog(**spec)))
        disc = Discovery(catalog(**spec), router, max_queue=4, resolver=resolver)
        await disc.start()
        try:
            (replica_set,) = disc.sets["m"]
            assert [d.name for d in router.deployments] == [f"m/127.0.0.1:{up.port}"]
            assert await run(Pipeline(router)) == (f"m/127.0.0.1:{up.port}", "Hello!")
            answers.clear()  # a failed resolution keeps what we have
            await replica_set.refresh()
            await replica_set.sync()
            assert len(router.deployments) == 1
            answers.append([])
            await replica_set.refresh()
            await replica_set.sync()
            assert router.deployments == []
            with pytest.raises(OverloadedError):
                router.plan(REQUEST, RequestContext())
        finally:
            await disc.aclose()


async def test_real_getaddrinfo_on_localhost() -> None:
    found = await resolve_dns("localhost", 8080)
    assert found and set(found) <= {"127.0.0.1", "::1"}


async def test_health_probe_takes_a_replica_out_and_back() -> None:
    async with FakeUpstream() as a, FakeUpstream() as b:
        answers = {a.url + "/models": True, b.url + "/models": True}

        async def probe(url: str, timeout: float) -> bool:
            return answers[url]

        disc = Discovery(catalog(base_urls=[a.url, b.url]), router := Router([]), max_queue=4, probe=probe)
        await disc.start()
        try:
            (replica_set,) = disc.sets["m"]
            answers[a.url + "/models"] = False
            await replica_set.probe_all()
            first = router.deployments[0]
            assert not first.up
            pipeline = Pipeline(router)
            for _ in range(3):
                assert (await run(pipeline))[0] == f"m/127.0.0.1:{b.port}"
            assert a.bodies == []
            assert disc.replicas("m-alias")[0]["up"] is False
            answers[a.url + "/models"] = True
            await replica_set.probe_all()
            assert first.up
        finally:
            await disc.aclose()


async def test_a_dead_replica_joins_down_by_the_real_probe() -> None:
    async with FakeUpstream() as up:
        disc = Discovery(catalog(base_urls=[dead(), up.url]), router := Router([]), max_queue=4)
        await disc.start()
        try:
            assert [d.up for d in router.deployments] == [False, True]
            for _ in range(3):
                assert (await run(Pipeline(router)))[0] == f"m/127.0.0.1:{up.port}"
        finally:
            await disc.aclose()


async def test_a_removed_replica_drains_then_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery_module, "DRAIN_GRACE_SECONDS", 0.05)
    async with FakeUpstream() as a, FakeUpstream() as b:
        disc = Discovery(catalog(base_urls=[a.url, b.url]), router := Router([]), max_queue=4)
        await disc.start()
        try:
            leaving = router.deployments[0]
            closed: list[bool] = []
            original = leaving.backend.aclose

            async def aclose() -> None:
                closed.append(True)
                await original()

            monkeypatch.setattr(leaving.backend, "aclose", aclose)
            await leaving.admission.acquire()  # a request in flight
            result = await disc.remove_replica("m", a.url + "/")
            assert result["deleted"] and result["deployment"] == leaving.name
            assert leaving not in router.deployments
            await asyncio.sleep(0.3)
            assert closed == []  # still serving its request
            leaving.admission.release()
            for _ in range(20):
                if closed:
                    break
                await asyncio.sleep(0.05)
            assert closed == [True]
            assert [d.name for d in router.deployments] == [f"m/127.0.0.1:{b.port}"]
        finally:
            await disc.aclose()


async def test_admin_operations_check_their_input() -> None:
    first = dead()
    disc = Discovery(catalog(base_url=first), router := Router([]), max_queue=4)
    await disc.start()
    try:
        assert disc.sets == {}  # one base_url: built by wiring/backends.py, not a replica set
        added = await disc.add_replica("m-alias", "http://127.0.0.1:9/v1/")
        assert added["base_url"] == "http://127.0.0.1:9/v1" and added["sources"] == ["admin"]
        assert [d.name for d in router.deployments] == ["m/127.0.0.1:9"]
        with pytest.raises(ConflictError):
            await disc.add_replica("m", "http://127.0.0.1:9/v1")
        with pytest.raises(ConflictError):
            await disc.add_replica("m", first)
        with pytest.raises(InvalidRequestError):
            await disc.add_replica("m", "not a url")
        with pytest.raises(ModelNotFoundError):
            await disc.add_replica("nope", "http://127.0.0.1:9/v1")
        with pytest.raises(NotFoundError):
            await disc.remove_replica("m", "http://127.0.0.1:10/v1")
        assert (await disc.remove_replica("m", "http://127.0.0.1:9/v1"))["deleted"]
        assert disc.replicas("m") == []
    finally:
        await disc.aclose()


def test_admin_api_over_http() -> None:
    cat = catalog(base_urls=[dead()])
    admin = {"Authorization": "Bearer adm-token"}
    with make_app(ScriptedBackend(), admin_token="adm-token", catalog=cat) as client:
        url = "/admin/v1/models/m/replicas"
        assert client.get(url).status_code == 401
        listed = client.get(url, headers=admin).json()["data"]
        assert len(listed) == 1 and listed[0]["up"] is False and listed[0]["sources"] == ["config"]
        new = f"http://127.0.0.1:{closed_port()}/v1"
        r = client.post(url, headers=admin, json={"base_url": new})
        assert r.status_code == 201 and r.json()["base_url"] == new
        r = client.post(url, headers=admin, json={"base_url": new})
        assert r.status_code == 409 and r.json()["error"]["code"] == "replica_exists"
        r = client.post(url, headers=admin, json={"base_url": "localhost:80"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "base_url"
        r = client.post("/admin/v1/models/unknown/replicas", headers=admin, json={"base_url": new})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = client.post("/admin/v1/models/test-model/replicas", headers=admin, json={"base_url": new})
        assert r.status_code == 404  # not a catalog model: nothing to copy a replica from
        assert client.post(url, headers=admin, json={}).status_code == 400
        assert len(client.get(url, headers=admin).json()["data"]) == 2
        r = client.delete(url, headers=admin, params={"base_url": new})
        assert r.status_code == 200 and r.json()["deleted"] is True
        r = client.delete(url, headers=admin, params={"base_url": new})
        assert r.status_code == 404 and r.json()["error"]["code"] == "replica_not_found"
        assert len(client.get(url, headers=admin).json()["data"]) == 1
        metrics = client.get("/metrics").text
        assert 'shoal_deployment_up{deployment="m/127.0.0.1' in metrics
