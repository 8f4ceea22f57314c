"""Speculative decoding in a real ``shoal serve``: n-gram lookup answers as plain decoding does, and says so.

One catalog serves the small test model twice: ``plain``, and ``lookup`` with
``draft: ngram`` (its speculating llama.cpp server in a child process). Driven with the
official ``openai`` client at temperature 0; the drafted and accepted tokens are read
from ``/metrics`` and from the usage records of the admin API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import CatalogServer, ServerProcess
from tests.speculation import REPEAT_CODE
from tests.tenancy import ADMIN_TOKEN, admin_create_key, key_records

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shoal(test_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("speculative")
    config = workdir / "shoal.yaml"
    local = f"type: local, path: {test_model_path}, parallel: 2, ctx_per_slot: 1024"
    config.write_text(f"""
models:
  - id: plain
    context_length: 1024
    deployments: [{{{local}}}]
  - id: lookup
    context_length: 1024
    deployments: [{{{local}, draft: ngram, draft_max: 16}}]
""")
    server = CatalogServer(test_model_path, workdir / "server", ("--config", str(config)),
                           env={"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        yield server.start()
    finally:
        server.stop()


def speculative_tokens(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(server.root_url + "/metrics", timeout=10).text
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "shoal_speculative_tokens_total" and s.labels.get("model") == "lookup"}


@pytest.fixture(scope="module")
def key(shoal: ServerProcess) -> dict[str, Any]:
    return admin_create_key(shoal, name="speculative")


def test_lookup_answers_as_plain_decoding_and_reports_its_drafts(shoal: ServerProcess, key: dict[str, Any]) -> None:
    client = shoal.client(api_key=key["key"])
    answers = {}
    for model in ("plain", "lookup"):
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": REPEAT_CODE}],
                                              temperature=0, max_tokens=96)
        answers[model] = chat.choices[0].message.content
        assert chat.usage is not None and chat.usage.completion_tokens > 0
    assert answers["lookup"] == answers["plain"]

    counts = speculative_tokens(shoal)
    assert counts.get("drafted", 0) > 0 and 0 < counts.get("accepted", 0) <= counts["drafted"]

    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in key_records(shoal, key["id"]) if r.get("model") == "lookup"]
        time.sleep(0.2)
    assert rows, "no usage record for the speculating model"
    row = rows[0]
    assert row["draft_tokens"] == counts["drafted"] and row["draft_accepted_tokens"] == counts["accepted"]


def test_lookup_streams_too(shoal: ServerProcess, key: dict[str, Any]) -> None:
    stream = shoal.client(api_key=key["key"]).chat.completions.create(
        model="lookup", messages=[{"role": "user", "content": REPEAT_CODE}], temperature=0, max_tokens=48,
        stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "def area" in "".join(pieces)
    assert usage is not None and usage.completion_tokens == 48
