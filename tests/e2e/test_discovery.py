"""Replicas that come and go under load: a real ``shoal serve``, upstream processes on 127.0.0.1, the openai client.

The catalog's ``remote`` model starts with one replica (``base_urls``). During a bounded load
run (200 streamed requests over ~20 s) a second replica is added through the admin API, the
first is killed without notice (its health probe takes it out), then removed; a third is added
and the second removed while requests are in flight on it (it drains). No request may fail
before its first byte, and each added replica must serve traffic. ``remote-dns`` finds its
replica by resolving ``localhost`` (a real ``getaddrinfo``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.tenancy import ADMIN_TOKEN
from tests.upstream_fakes import UpstreamProcess

from .conftest import ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-discovery-static-key-0123456789"
REQUESTS = 200
SPACING_S = 0.1
PROBE = "{interval_seconds: 0.5, timeout_seconds: 0.5, unhealthy_after: 1}"


@pytest.fixture
def upstreams() -> Iterator[list[UpstreamProcess]]:
    made: list[UpstreamProcess] = []
    try:
        yield made
    finally:
        for up in made:
            up.stop()


def start_upstream(upstreams: list[UpstreamProcess]) -> UpstreamProcess:
    up = UpstreamProcess(piece_delay=0.03, lifetime=180)
    upstreams.append(up)
    return up.start()


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.root_url + "/admin/v1/models", timeout=30,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def start_shoal(server_factory: ServerFactory, tmp_path: Path, first: UpstreamProcess,
                dns: UpstreamProcess) -> ServerProcess:
    config = tmp_path / "shoal.yaml"
    config.write_text(f"""
models:
  - id: remote
    deployments:
      - type: openai
        model: up
        base_urls: ["{first.url}"]
        health_check: {PROBE}
        timeouts: {{connect: 1, first_byte: 5}}
  - id: remote-dns
    deployments:
      - type: openai
        model: up
        discover: {{dns: localhost, port: {dns.port}, path: /v1, interval_seconds: 1}}
        health_check: {PROBE}
""")
    return server_factory("--config", str(config), env={"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN, "SHOAL_API_KEYS": API_KEY})


def one_request(client: openai.OpenAI, model: str = "remote") -> dict[str, Any]:
    """A streamed request: which deployment served it, and whether it failed before or after its first byte."""
    got_first = False
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=16)
        served = raw.headers.get("x-shoal-deployment", "")
        text = ""
        for part in raw.parse():
            got_first = True
            if part.choices and part.choices[0].delta.content:
                text += part.choices[0].delta.content
        return {"ok": text.startswith("tok"), "deployment": served, "failed": None}
    except Exception as exc:  # noqa: BLE001 - counted, and shown if the assertion fails
        return {"ok": False, "deployment": "", "failed": "after" if got_first else "before", "error": repr(exc)}


def test_replicas_join_and_leave_under_load(server_factory: ServerFactory, tmp_path: Path,
                                            upstreams: list[UpstreamProcess]) -> None:
    first, second, third = (start_upstream(upstreams) for _ in range(3))
    dns = start_upstream(upstreams)
    shoal = start_shoal(server_factory, tmp_path, first, dns)
    client = shoal.client(api_key=API_KEY, timeout=30)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def run(_: int) -> None:
        at = time.monotonic() - began
        result = one_request(client)
        result["at"] = at  # when it started
        with lock:
            results.append(result)

    with admin(shoal) as adm, ThreadPoolExecutor(max_workers=8) as pool:
        listed = adm.get("/remote/replicas").json()["data"]
        assert [(r["base_url"], r["up"], r["sources"]) for r in listed] == [(first.url, True, ["config"])]
        began = time.monotonic()
        steps = {30: "add second", 70: "kill first", 100: "remove first", 130: "add third", 150: "remove second"}
        marks: dict[str, float] = {}
        for i in range(REQUESTS):
            step = steps.get(i)
            if step:
                marks[step] = time.monotonic() - began
            if step == "add second":
                assert adm.post("/remote/replicas", json={"base_url": second.url}).status_code == 201
            elif step == "kill first":
                first.stop()
            elif step == "remove first":
                r = adm.delete("/remote/replicas", params={"base_url": first.url})
                assert r.status_code == 200 and r.json()["up"] is False  # the probe had taken it out
            elif step == "add third":
                assert adm.post("/remote/replicas", json={"base_url": third.url}).status_code == 201
            elif step == "remove second":
                r = adm.delete("/remote/replicas", params={"base_url": second.url})
                assert r.status_code == 200
            pool.submit(run, i)
            time.sleep(SPACING_S)
        pool.shutdown(wait=True)
        final = adm.get("/remote/replicas").json()["data"]
    client.close()

    assert len(results) == REQUESTS
    before = [r for r in results if r["failed"] == "before"]
    assert before == [], before[:5]
    after = [r for r in results if r["failed"] == "after"]
    # Only streams that were on the first replica when it was killed may break (mid-stream).
    assert all(marks["kill first"] - 2 <= r["at"] <= marks["kill first"] for r in after), after[:5]
    assert len(after) <= 10, after[:5]
    served = Counter(r["deployment"] for r in results if r["ok"])
    name = {up: f"remote/127.0.0.1:{up.port}" for up in (first, second, third)}
    assert served[name[first]] > 0 and served[name[second]] > 0 and served[name[third]] > 0, served
    late = Counter(r["deployment"] for r in results if r["ok"] and r["at"] > marks["remove second"] + 1)
    assert set(late) == {name[third]}, late  # removed replicas get nothing new
    assert [r["base_url"] for r in final] == [third.url]


def test_dns_discovery_finds_the_replica(server_factory: ServerFactory, tmp_path: Path,
                                         upstreams: list[UpstreamProcess]) -> None:
    first, dns = start_upstream(upstreams), start_upstream(upstreams)
    shoal = start_shoal(server_factory, tmp_path, first, dns)
    with admin(shoal) as adm:
        listed = adm.get("/remote-dns/replicas").json()["data"]
    by_url = {r["base_url"]: r for r in listed}
    assert by_url[dns.url]["up"] is True and by_url[dns.url]["sources"] == ["dns"]
    # localhost may also resolve to ::1, where nothing listens: that replica is down, never chosen.
    assert all(r["up"] is False for url, r in by_url.items() if url != dns.url)
    with shoal.client(api_key=API_KEY) as client:
        for _ in range(3):
            result = one_request(client, "remote-dns")
            assert result["ok"] and result["deployment"] == f"remote-dns/127.0.0.1:{dns.port}", result
    ready = httpx.get(shoal.root_url + "/ready", timeout=10)
    assert ready.status_code == 200, ready.text
