"""Keys, scopes and limits through the HTTP surface (scripted backend): statuses, bodies and headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shoal.auth.manage import KeySpec
from shoal.core.backend import ModelCard
from tests.scripted import CARD, ScriptedBackend, make_app

OTHER = ModelCard(id="other-model", owned_by="shoal", created=0, context_length=2048)
ADMIN = {"Authorization": "Bearer adm"}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_app(ScriptedBackend(cards=[CARD, OTHER], capacity=4), admin_token="adm", api_keys=("static-key-0123456789",),
                  prices={"test-model": {"input": 1000, "output": 1000}}) as c:
        yield c


def new_key(client: TestClient, **spec: object) -> dict[str, str]:
    r = client.post("/admin/keys", headers=ADMIN, json={"name": "t", **spec})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def test_static_keys_see_everything_without_limits(client: TestClient) -> None:
    auth = {"Authorization": "Bearer static-key-0123456789"}
    r = client.get("/v1/models", headers=auth)
    assert [m["id"] for m in r.json()["data"]] == ["test-model", "other-model"]
    assert not any(h.startswith(("x-ratelimit", "ratelimit")) for h in r.headers)
    assert client.post("/v1/chat/completions", headers=auth, json={"model": "other-model", **CHAT}).status_code == 200


def test_scoped_key_sees_only_its_models_and_gets_the_unknown_model_404(client: TestClient) -> None:
    auth = new_key(client, models=["test-alias"])  # an alias of test-model
    assert [m["id"] for m in client.get("/v1/models", headers=auth).json()["data"]] == ["test-model"]
    hidden = client.post("/v1/chat/completions", headers=auth, json={"model": "other-model", **CHAT})
    unknown = client.post("/v1/chat/completions", headers=auth, json={"model": "no-such-model", **CHAT})
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"] == {**unknown.json()["error"],
                                      "message": unknown.json()["error"]["message"].replace("no-such-model",
                                                                                            "other-model")}
    assert client.get("/v1/models/other-model", headers=auth).status_code == 404
    r = client.post("/v1/responses", headers=auth, json={"model": "other-model", "input": "hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert client.post("/v1/chat/completions", headers=auth, json={"model": "test-model", **CHAT}).status_code == 200


def test_rate_limit_headers_on_every_response_and_429(client: TestClient) -> None:
    auth = new_key(client, rpm=4, tpm=10_000)
    responses = [
        client.get("/v1/models", headers=auth),
        client.post("/v1/chat/completions", headers=auth, json={"model": "test-model", **CHAT}),
        client.post("/v1/chat/completions", headers=auth, json={"model": "test-model", "stream": True, **CHAT}),
        client.post("/v1/chat/completions", headers=auth, json={"model": "nope", **CHAT}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404]
    remaining = []
    for r in responses:
        for name in ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
                     "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
                     "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
            assert name in r.headers, (name, r.status_code)
        remaining.append(int(r.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [3, 2, 1, 0]
    assert int(responses[1].headers["x-ratelimit-remaining-tokens"]) < 10_000
    limited = client.get("/v1/models", headers=auth)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"


def test_budget_refusal_is_insufficient_quota(client: TestClient) -> None:
    auth = new_key(client, budget_usd=0)
    r = client.post("/v1/chat/completions", headers=auth, json={"model": "test-model", **CHAT})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "insufficient_quota" and r.json()["error"]["type"] == "insufficient_quota"
    r = client.post("/v1/responses", headers=auth, json={"model": "test-model", "input": "hi"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    assert client.get("/v1/models", headers=auth).status_code == 200  # listing models costs nothing


def test_auth_off_until_a_key_exists() -> None:
    with make_app(ScriptedBackend(), key_cache_seconds=0) as c:
        assert c.get("/v1/models").status_code == 200
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(svc.tenancy.keys.create, KeySpec(name="first"))  # type: ignore[union-attr]
        assert c.get("/v1/models").status_code == 401
