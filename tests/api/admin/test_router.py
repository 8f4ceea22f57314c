"""The admin API over HTTP (scripted backend): token handling, keys CRUD, usage summaries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.scripted import ScriptedBackend, make_app

ADMIN = {"Authorization": "Bearer adm-token"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_app(ScriptedBackend(), admin_token="adm-token",
                  prices={"test-model": {"input": 1000, "output": 2000}}) as c:
        yield c


def test_disabled_without_admin_token() -> None:
    with make_app(ScriptedBackend()) as c:
        r = c.get("/admin/keys", headers=ADMIN)
        assert r.status_code == 404 and "--admin-token" in r.json()["error"]["message"]


def test_admin_token_required(client: TestClient) -> None:
    assert client.get("/admin/keys").status_code == 401
    assert client.get("/admin/keys", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/admin/keys", headers=ADMIN).status_code == 200


def test_keys_and_admin_token_do_not_mix(client: TestClient) -> None:
    secret = client.post("/admin/keys", headers=ADMIN, json={"name": "a"}).json()["key"]
    assert client.get("/admin/keys", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    r = client.get("/v1/models", headers=ADMIN)
    assert r.status_code == 401
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_create_list_get_revoke_rotate(client: TestClient) -> None:
    r = client.post("/admin/keys", headers=ADMIN, json={
        "name": "team-a", "models": ["test-model"], "rpm": 10, "tpm": 1000, "budget_usd": 2.5,
        "budget_period": "day"})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert secret.startswith("sk-shoal-") and created["id"].startswith("key_")
    assert created["prefix"] == secret[:13] and created["status"] == "active"
    assert (created["models"], created["rpm"], created["tpm"], created["budget_usd"], created["budget_period"]) == (
        ["test-model"], 10, 1000, 2.5, "day")

    listing = client.get("/admin/keys", headers=ADMIN).json()
    assert [k["id"] for k in listing["data"]] == [created["id"]]
    assert secret not in str(listing) and "hash" not in str(listing)
    assert client.get(f"/admin/keys/{created['id']}", headers=ADMIN).json()["name"] == "team-a"
    assert client.get("/admin/keys/key_nope", headers=ADMIN).status_code == 404

    rotated = client.post(f"/admin/keys/{created['id']}/rotate", headers=ADMIN).json()
    assert rotated["id"] == created["id"] and rotated["key"] != secret and rotated["rotated_at"]
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    new = {"Authorization": f"Bearer {rotated['key']}"}
    assert client.get("/v1/models", headers=new).status_code == 200

    revoked = client.post(f"/admin/keys/{created['id']}/revoke", headers=ADMIN).json()
    assert revoked["status"] == "revoked"
    r = client.get("/v1/models", headers=new)
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"  # at once, on this replica
    assert client.post(f"/admin/keys/{created['id']}/rotate", headers=ADMIN).status_code == 400
    active = client.get("/admin/keys?include_revoked=false", headers=ADMIN).json()["data"]
    assert active == []


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x", "rpm": 0}, {"name": "x", "budget_usd": -1},
                                  {"name": "x", "budget_period": "week", "budget_usd": 1},
                                  {"name": "x", "budget_period": "day"}, {"name": "x", "colour": "red"},
                                  # past the 32-bit columns: found by the OpenAPI fuzz run, was a 500
                                  {"name": "x", "rpm": 2**31}, {"name": "x", "tpm": 2**63}])
def test_invalid_key_bodies(client: TestClient, body: dict) -> None:
    r = client.post("/admin/keys", headers=ADMIN, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_usage_summary_and_records(client: TestClient) -> None:
    key = client.post("/admin/keys", headers=ADMIN, json={"name": "meter-me"}).json()
    auth = {"Authorization": f"Bearer {key['key']}"}
    for _ in range(2):
        r = client.post("/v1/chat/completions", headers=auth,
                        json={"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    by_key = client.get("/admin/usage?by=key", headers=ADMIN).json()
    assert by_key["by"] == "key"
    [row] = by_key["data"]
    assert row["key"] == key["id"] and row["name"] == "meter-me" and row["requests"] == 2
    assert row["input_tokens"] == 10 and row["output_tokens"] == 2  # the scripted backend: Usage(5, 1) each
    assert row["cost_usd"] == pytest.approx(2 * (5 * 1000 + 1 * 2000) / 1e6)
    assert client.get("/admin/usage?by=model", headers=ADMIN).json()["data"][0]["model"] == "test-model"
    assert len(client.get("/admin/usage?by=day&since=1d", headers=ADMIN).json()["data"]) == 1
    assert client.get("/admin/usage?since=yesterday-ish", headers=ADMIN).status_code == 400
    assert client.get("/admin/usage?by=colour", headers=ADMIN).status_code == 400
    records = client.get(f"/admin/usage/records?key_id={key['id']}&limit=1", headers=ADMIN).json()["data"]
    assert len(records) == 1 and records[0]["status"] == "completed"
    assert records[0]["endpoint"] == "/v1/chat/completions" and records[0]["deployment"] == "scripted"
