"""``/v1/embeddings`` against a real ``shoal serve`` with the official ``openai`` client.

The small test model runs in embedding mode (mean pooling) beside the chat model. The same
request path as generation: keys and their model scope, usage rows with cost, the catalog
listing, errors in OpenAI's shape; and an upstream deployment (a second Shoal) relayed.
"""

from __future__ import annotations

import base64
import math
import time
from array import array
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.tenancy import ADMIN_TOKEN, admin_create_key, key_records

from .conftest import MODEL_ID, ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

EMBED = "smol-embed"
DIMENSIONS = 576


def catalog(tmp: Path, deployment: str) -> Path:
    path = tmp / "shoal.yaml"
    path.write_text(f"""
prices:
  {EMBED}: {{input: 1000}}
models:
  - id: {EMBED}
    context_length: 512
    capabilities: [embeddings]
    deployments: [{{{deployment}}}]
""")
    return path


@pytest.fixture(scope="module")
def srv(module_server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory,
        test_model_path: Path) -> ServerProcess:
    config = catalog(tmp_path_factory.mktemp("cfg"), f"type: local, path: {test_model_path}, parallel: 2")
    return module_server_factory("--parallel", "2", "--ctx-per-slot", "1024", "--config", str(config),
                                 env={"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.fixture(scope="module")
def key(srv: ServerProcess) -> dict[str, Any]:
    return admin_create_key(srv, name="embedder")


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_listed_with_the_embeddings_capability(srv: ServerProcess, key: dict[str, Any]) -> None:
    with srv.http(headers={"Authorization": f"Bearer {key['key']}"}) as http:
        models = {m["id"]: m for m in http.get("/models").json()["data"]}
    assert "embeddings" in models[EMBED]["capabilities"]
    assert "chat" not in models[EMBED]["capabilities"]
    assert "embeddings" not in models[MODEL_ID]["capabilities"]


def test_strings_give_unit_vectors_that_rank_meaning(srv: ServerProcess, key: dict[str, Any]) -> None:
    client = srv.client(api_key=key["key"])
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue rose by ten percent."]
    # Without encoding_format the SDK asks for base64 and decodes it itself; ask for floats explicitly as well.
    for options in ({}, {"encoding_format": "float"}):
        result = client.embeddings.create(model=EMBED, input=texts, **options)  # type: ignore[arg-type]
        vectors = [item.embedding for item in result.data]
        assert [item.index for item in result.data] == [0, 1, 2]
        assert all(len(v) == DIMENSIONS for v in vectors)
        assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-3) for v in vectors)
        assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
        assert result.model == EMBED and result.usage.prompt_tokens > 0
        assert result.usage.total_tokens == result.usage.prompt_tokens


def test_base64_and_float_agree_and_token_arrays_work(srv: ServerProcess, key: dict[str, Any]) -> None:
    client = srv.client(api_key=key["key"])
    default = client.embeddings.create(model=EMBED, input="hello world").data[0].embedding
    floats = client.embeddings.create(model=EMBED, input="hello world", encoding_format="float").data[0].embedding
    assert max(abs(a - b) for a, b in zip(default, floats, strict=True)) < 1e-6
    raw = client.embeddings.create(model=EMBED, input="hello world", encoding_format="base64").data[0].embedding
    assert isinstance(raw, str)  # asked for explicitly, the SDK hands the base64 over as it came
    unpacked = array("f", base64.b64decode(raw)).tolist()
    assert max(abs(a - b) for a, b in zip(unpacked, floats, strict=True)) < 1e-6
    tokens = client.embeddings.create(model=EMBED, input=[[1, 2, 3, 4]]).data[0].embedding
    one_array = client.embeddings.create(model=EMBED, input=[1, 2, 3, 4]).data[0].embedding
    assert len(tokens) == DIMENSIONS and max(abs(a - b) for a, b in zip(tokens, one_array, strict=True)) < 1e-6


def test_bad_input_is_a_400_in_openais_shape(srv: ServerProcess, key: dict[str, Any]) -> None:
    client = srv.client(api_key=key["key"])
    cases: list[dict[str, Any]] = [
        {"model": EMBED, "input": []},
        {"model": EMBED, "input": [""]},
        {"model": EMBED, "input": ["x"] * 2049},
        {"model": EMBED, "input": "x", "encoding_format": "hex"},
        {"model": EMBED, "input": "x", "dimensions": 100},  # no Matryoshka sizes for this model
        {"model": MODEL_ID, "input": "x"},  # a chat model does not embed
    ]
    for body in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(**body)
        assert info.value.status_code == 400
        assert isinstance(info.value.body, dict) and info.value.body.get("message"), body
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_capable" and "serves embed, not generate" in str(info.value)


def test_keys_scope_and_usage_rows(srv: ServerProcess) -> None:
    chat_only = admin_create_key(srv, name="chat-only", models=[MODEL_ID])
    with pytest.raises(openai.NotFoundError):
        srv.client(api_key=chat_only["key"]).embeddings.create(model=EMBED, input="hi")
    metered = admin_create_key(srv, name="metered-embed")
    result = srv.client(api_key=metered["key"]).embeddings.create(model=EMBED, input=["one", "two"])
    records: list[dict[str, Any]] = []
    for _ in range(100):
        records = key_records(srv, metered["id"])
        if records:
            break
        time.sleep(0.1)
    assert len(records) == 1
    row = records[0]
    assert row["model"] == EMBED and row["endpoint"] == "/v1/embeddings"
    assert row["input_tokens"] == result.usage.prompt_tokens and row["output_tokens"] == 0
    assert row["cost_usd"] == pytest.approx(result.usage.prompt_tokens * 1000 / 1e6)


def test_an_upstream_embedding_deployment_relays(srv: ServerProcess, server_factory: ServerFactory,
                                                 key: dict[str, Any], tmp_path: Path) -> None:
    config = catalog(tmp_path, f"type: openai, base_url: '{srv.base_url}', model: {EMBED}, "
                               "api_key_env: UPSTREAM_KEY")
    front = server_factory("--config", str(config), env={"UPSTREAM_KEY": key["key"]})
    direct = srv.client(api_key=key["key"]).embeddings.create(model=EMBED, input=["relay me"], encoding_format="float")
    relayed = front.client().embeddings.create(model=EMBED, input=["relay me"], encoding_format="float")
    assert max(abs(a - b) for a, b in zip(direct.data[0].embedding, relayed.data[0].embedding, strict=True)) < 1e-6
    assert relayed.usage.prompt_tokens == direct.usage.prompt_tokens
