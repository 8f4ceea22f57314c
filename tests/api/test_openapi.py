"""The OpenAPI document (with the directly called generation routes) and a schemathesis run over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shoal.app import create_app
from shoal.config import Settings
from shoal.protocol.chat import ChatCompletionRequest
from shoal.protocol.responses import ResponsesRequest
from tests.api_fuzz import fuzz, fuzz_server
from tests.scripted import ScriptedBackend


@pytest.fixture
def document(tmp_path: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    app = create_app(Settings(data_dir=tmp_path), backend_factory=lambda s: [ScriptedBackend()])
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        assert app.openapi() is app.openapi()  # built once, on the first request
        yield response.json()


def resolve(document: dict, ref: str) -> dict:  # type: ignore[type-arg]
    assert ref.startswith("#/components/schemas/")
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("path", "model"), [("/v1/chat/completions", ChatCompletionRequest),
                                             ("/v1/responses", ResponsesRequest)])
def test_generation_routes_are_documented_with_their_request_models(document: dict, path: str,  # type: ignore[type-arg]
                                                                     model: type) -> None:
    operation = document["paths"][path]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    schema = resolve(document, body["schema"]["$ref"])
    assert set(model.model_json_schema()["properties"]) == set(schema["properties"])
    for example in body["examples"].values():
        model.model_validate(example["value"])  # the examples are valid requests
    answers = operation["responses"]
    assert {"application/json", "text/event-stream"} <= set(answers["200"]["content"])
    for status in ("400", "401", "404", "413", "415", "421", "429", "503"):
        error = resolve(document, answers[status]["content"]["application/json"]["schema"]["$ref"])
        assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]


def test_admin_routes_are_documented_and_no_route_claims_422(document: dict) -> None:  # type: ignore[type-arg]
    paths = document["paths"]
    assert {"/admin/keys", "/admin/keys/{key_id}/revoke", "/admin/keys/{key_id}/rotate", "/admin/usage"} <= set(paths)
    assert "KeyCreate" in document["components"]["schemas"]
    for item in paths.values():
        for operation in item.values():
            assert "422" not in operation["responses"]  # Shoal answers a bad field with 400
    assert not any(p.startswith("/console") for p in paths)


@pytest.mark.slow  # bounded by its own budget (30 s of cases), not by the 30 s hang guard
def test_schemathesis_finds_no_server_error() -> None:
    """Generated valid and invalid requests for every documented operation: no 5xx, nothing logged as an error."""
    with fuzz_server() as url:
        report = fuzz(url, max_examples=8, seconds=30)
    assert report.operations >= 18
    assert report.cases >= 100
    assert report.server_errors == []
    assert report.logged_errors == []
    assert report.statuses[200] > 0 and report.by_operation["POST /v1/chat/completions"][200] > 0
