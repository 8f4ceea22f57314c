"""Usage metering against a real ``shoal serve``: every generation recorded, however it ends, and reported."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from shoal.usage.pricing import Pricing
from tests.tenancy import ADMIN_TOKEN, PRICES_YAML, admin, admin_create_key, assert_no_secrets, cli, key_records

from .conftest import MODEL_ID, ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

PRICE = Pricing(input=1000, cached_input=100, output=4000)
HI = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def srv(module_server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    config = tmp_path_factory.mktemp("cfg") / "shoal.yaml"
    config.write_text(PRICES_YAML)
    return module_server_factory("--parallel", "2", "--ctx-per-slot", "1024", "--config", str(config),
                                 env={"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.fixture(scope="module")
def key(srv: ServerProcess) -> dict[str, Any]:
    return admin_create_key(srv, name="metered")


@pytest.fixture
def client(srv: ServerProcess, key: dict[str, Any]) -> openai.OpenAI:
    return srv.client(api_key=key["key"])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def newest(srv: ServerProcess, key: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Wait until the key has ``count`` records; the newest first."""
    return list(wait_for(lambda: (r := key_records(srv, key["id"])) and len(r) >= count and r))


def cost(input_tokens: int, cached: int, output: int) -> float:
    return PRICE.cost(input_tokens, cached, output)


def test_completed_chat_is_metered_with_cost(srv: ServerProcess, key: dict[str, Any],
                                             client: openai.OpenAI) -> None:
    before = len(key_records(srv, key["id"]))
    out = client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=4)
    rec = newest(srv, key, before + 1)[0]
    assert out.usage is not None
    assert (rec["key_id"], rec["model"], rec["deployment"], rec["endpoint"]) == (
        key["id"], MODEL_ID, f"local:{MODEL_ID}", "/v1/chat/completions")
    assert rec["status"] in ("completed", "incomplete")
    assert rec["input_tokens"] == out.usage.prompt_tokens and rec["output_tokens"] == out.usage.completion_tokens
    cached = out.usage.prompt_tokens_details.cached_tokens if out.usage.prompt_tokens_details else 0
    assert rec["cached_tokens"] == (cached or 0) and rec["reasoning_tokens"] == 0
    assert rec["cost_usd"] == pytest.approx(cost(rec["input_tokens"], rec["cached_tokens"], rec["output_tokens"]))
    assert rec["cost_usd"] > 0 and 0 < rec["ttft_ms"] <= rec["latency_ms"]


def test_cached_prompt_tokens_are_priced_at_the_cached_rate(srv: ServerProcess, key: dict[str, Any],
                                                            client: openai.OpenAI) -> None:
    long_prompt = [{"role": "user", "content": "Remember these words: " + " ".join(["alpha beta gamma"] * 40)}]
    client.chat.completions.create(model=MODEL_ID, messages=long_prompt, max_tokens=1)
    before = len(key_records(srv, key["id"]))
    out = client.chat.completions.create(model=MODEL_ID, messages=long_prompt, max_tokens=1)
    rec = newest(srv, key, before + 1)[0]
    assert out.usage is not None and out.usage.prompt_tokens_details is not None
    assert rec["cached_tokens"] == out.usage.prompt_tokens_details.cached_tokens
    assert rec["cost_usd"] == pytest.approx(cost(rec["input_tokens"], rec["cached_tokens"], rec["output_tokens"]))
    assert rec["cached_tokens"] > 0  # llama.cpp reuses the prompt cache of the same slot
    assert rec["cost_usd"] < cost(rec["input_tokens"], 0, rec["output_tokens"])


def test_responses_api_is_metered(srv: ServerProcess, key: dict[str, Any], client: openai.OpenAI) -> None:
    before = len(key_records(srv, key["id"]))
    resp = client.responses.create(model=MODEL_ID, input="Say hello", max_output_tokens=16)
    rec = newest(srv, key, before + 1)[0]
    assert rec["endpoint"] == "/v1/responses" and resp.usage is not None
    assert rec["input_tokens"] == resp.usage.input_tokens and rec["output_tokens"] == resp.usage.output_tokens


def test_cancelled_stream_is_metered_for_what_was_generated(srv: ServerProcess, key: dict[str, Any],
                                                            client: openai.OpenAI) -> None:
    before = len(key_records(srv, key["id"]))
    # Greedy, and a prompt this model keeps answering for hundreds of tokens: the stream is still
    # running when the client goes away (a sampled short answer could finish first).
    stream = client.chat.completions.create(model=MODEL_ID, messages=[
        {"role": "user", "content": "Write the numbers from 1 to 500 separated by commas: 1, 2, 3,"}],
        max_tokens=400, temperature=0, stream=True)
    deltas = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            deltas += 1
            if deltas == 4:
                break
    stream.close()
    rec = newest(srv, key, before + 1)[0]
    assert rec["status"] == "cancelled"
    assert 4 <= rec["output_tokens"] < 400
    assert rec["input_tokens"] > 0 and rec["cost_usd"] == pytest.approx(
        cost(rec["input_tokens"], rec["cached_tokens"], rec["output_tokens"]))


def test_failed_request_is_recorded_failed(srv: ServerProcess, key: dict[str, Any], client: openai.OpenAI) -> None:
    before = len(key_records(srv, key["id"]))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_ID, max_tokens=4, messages=[
            {"role": "user", "content": " ".join(["context overflow"] * 1500)}])
    rec = newest(srv, key, before + 1)[0]
    assert rec["status"] == "failed" and rec["output_tokens"] == 0 and rec["cost_usd"] == 0


def test_usage_reports_cli_and_admin_api_agree(srv: ServerProcess, key: dict[str, Any],
                                               client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)
    records = key_records(srv, key["id"])
    with admin(srv) as http:
        api_rows = {r["key"]: r for r in http.get("/usage", params={"by": "key", "since": "1d"}).json()["data"]}
        by_model = http.get("/usage", params={"by": "model"}).json()["data"]
    row = api_rows[key["id"]]
    assert row["name"] == "metered" and row["requests"] == len(records)
    assert row["failed"] == sum(r["status"] == "failed" for r in records)
    assert row["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in records))
    assert row["output_tokens"] == sum(r["output_tokens"] for r in records)
    assert [r["model"] for r in by_model] == [MODEL_ID]

    as_json = json.loads(cli(srv, "usage", "--by", "key", "--since", "1d", "--format", "json").stdout)
    assert {r["key"]: r["requests"] for r in as_json["data"]}[key["id"]] == len(records)
    as_csv = list(csv.DictReader(io.StringIO(cli(srv, "usage", "--by", "day", "--format", "csv").stdout)))
    assert len(as_csv) == 1 and float(as_csv[0]["cost_usd"]) >= row["cost_usd"] - 1e-9
    table = cli(srv, "usage", "--by", "model").stdout
    assert MODEL_ID in table and "total" in table
    assert key["key"] not in table + json.dumps(as_json)


def test_no_key_or_hash_in_the_server_log(srv: ServerProcess, key: dict[str, Any], tmp_path: Path) -> None:
    assert_no_secrets(srv.log_text(), [key["key"], ADMIN_TOKEN])
