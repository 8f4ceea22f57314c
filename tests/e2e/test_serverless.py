"""Serverless local models in a real ``shoal serve``: load on the first request, eviction under a memory limit.

Two serverless copies of the small test model (94 MiB each) under a 150 MiB
limit that fits only one: nothing loads at start; the first request loads its
model; requests to the other model (three at once, during its load) evict the
first and share one load; an idle model unloads by itself. Seen in the log,
``/v1/models`` and ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CatalogServer, ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def shoal(test_model_path: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    config = tmp_path / "shoal.yaml"
    local = f"type: local, path: {test_model_path}, mode: serverless, parallel: 2, ctx_per_slot: 512"
    config.write_text(f"""
memory_limit_mb: 150
memory_wait_seconds: 10
models:
  - id: smol-a
    context_length: 512
    deployments: [{{{local}, idle_unload_seconds: 600}}]
  - id: smol-b
    context_length: 512
    deployments: [{{{local}, idle_unload_seconds: 3}}]
""")
    server = CatalogServer(test_model_path, tmp_path / "server", ("--config", str(config)))
    try:
        yield server.start()
    finally:
        server.stop()


def states(http: httpx.Client) -> dict[str, str]:
    return {m["id"]: m["deployments"][0]["state"] for m in http.get("/models").json()["data"]}


def chat(server: ServerProcess, model: str) -> int:
    with server.http() as http:
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        return http.post("/chat/completions", json=body).status_code


def test_load_on_first_request_and_eviction_under_the_memory_limit(shoal: ServerProcess) -> None:
    with shoal.http() as http:
        assert states(http) == {"smol-a": "unloaded", "smol-b": "unloaded"}
        assert "loading smol-a" not in shoal.log_text()

        assert chat(shoal, "smol-a") == 200
        log = shoal.log_text()
        assert "loading smol-a for a request (serverless" in log and "loaded smol-a in" in log
        assert states(http) == {"smol-a": "loaded", "smol-b": "unloaded"}

        with ThreadPoolExecutor(3) as pool:
            codes = list(pool.map(lambda _: chat(shoal, "smol-b"), range(3)))
        assert codes == [200, 200, 200]
        log = shoal.log_text()
        assert "unloaded smol-a (serverless, evicted to make room for smol-b)" in log
        assert log.count("loaded smol-b in") == 1
        assert states(http) == {"smol-a": "unloaded", "smol-b": "loaded"}
        metrics = httpx.get(f"{shoal.root_url}/metrics").text
        assert 'shoal_model_loads_total{deployment="smol-b/local-0",model="smol-b"} 1.0' in metrics
        assert 'shoal_model_unloads_total{deployment="smol-a/local-0",model="smol-a"} 1.0' in metrics

        assert shoal.wait_for_log("unloaded smol-b (serverless, idle for 3 s)", timeout=10)
        assert states(http) == {"smol-a": "unloaded", "smol-b": "unloaded"}
        assert chat(shoal, "smol-a") == 200
        assert shoal.log_text().count("loaded smol-a in") == 2
