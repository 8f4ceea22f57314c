"""Error statuses and the OpenAI error shape, auth, and refused configurations."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import MODEL_ID, ServerFactory, ServerProcess, free_port

pytestmark = pytest.mark.e2e

CHAT = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
RESP = {"model": MODEL_ID, "input": "Hi", "max_output_tokens": 2}


def assert_error(r: httpx.Response, status: int, *, param: str | None = None,
                 error_type: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    if param is not None:
        assert err["param"] == param, err
    if error_type is not None:
        assert err["type"] == error_type, err
    return err


# -- 400 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
def test_malformed_json(http: httpx.Client, path: str) -> None:
    r = http.post(path, content=b'{"model": "smollm2", "messages": [', headers={"content-type": "application/json"})
    err = assert_error(r, 400, error_type="invalid_request_error")
    assert "JSON" in err["message"]


def test_missing_messages_names_the_param(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json={"model": MODEL_ID})
    err = assert_error(r, 400, param="messages", error_type="invalid_request_error")
    assert "messages" in err["message"]


def test_missing_input_names_the_param(http: httpx.Client) -> None:
    r = http.post("/responses", json={"model": MODEL_ID})
    assert_error(r, 400, param="input")


@pytest.mark.parametrize("path,base", [("/chat/completions", CHAT), ("/responses", RESP)])
@pytest.mark.parametrize("field,value", [
    ("temperature", 3),
    ("temperature", -0.5),
    ("top_p", 1.5),
    ("stop", ["a", "b", "c", "d", "e"]),
    ("metadata", {f"k{i}": "v" for i in range(17)}),
    ("metadata", {"k" * 65: "v"}),
    ("metadata", {"k": "v" * 513}),
])
def test_out_of_range_fields(http: httpx.Client, path: str, base: dict, field: str, value) -> None:
    r = http.post(path, json={**base, field: value})
    assert_error(r, 400, param=field, error_type="invalid_request_error")


@pytest.mark.parametrize("path,base", [("/chat/completions", CHAT), ("/responses", RESP)])
def test_metadata_at_the_limits_is_accepted(http: httpx.Client, path: str, base: dict) -> None:
    meta = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    assert all(len(k) == 64 for k in meta)
    r = http.post(path, json={**base, "metadata": meta})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("field", ["max_output_tokens", "max_tokens"])
def test_zero_output_tokens(http: httpx.Client, field: str) -> None:
    r = http.post("/responses", json={"model": MODEL_ID, "input": "Hi", field: 0})
    assert_error(r, 400, param=field)


def test_openai_client_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}],
                                       temperature=3)
    assert info.value.status_code == 400
    assert info.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL_ID, input="Hi", max_output_tokens=0)
    assert info.value.param == "max_output_tokens"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}],
                                       stop=["1", "2", "3", "4", "5"])


# -- 404 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,base", [("/chat/completions", CHAT), ("/responses", RESP)])
def test_unknown_model_is_404(http: httpx.Client, path: str, base: dict) -> None:
    r = http.post(path, json={**base, "model": "gpt-nonexistent"})
    err = assert_error(r, 404, param="model")
    assert err["code"] == "model_not_found"
    assert "gpt-nonexistent" in err["message"]


def test_unknown_model_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nonexistent", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-nonexistent", input="Hi")


def test_unknown_route_is_404_with_error_shape(http: httpx.Client) -> None:
    r = http.get("/no-such-endpoint")
    assert_error(r, 404)


# -- unknown fields are accepted ----------------------------------------------------------------------

@pytest.mark.parametrize("path,base", [("/chat/completions", CHAT), ("/responses", RESP)])
def test_unknown_fields_are_accepted(http: httpx.Client, path: str, base: dict) -> None:
    r = http.post(path, json={**base, "foo": 1, "vendor_extra": {"a": [1, 2]}})
    assert r.status_code == 200, r.text


def test_unknown_fields_via_extra_body(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                       extra_body={"foo": 1, "top_k": 5})
    assert r.usage.completion_tokens == 2


# -- 413 ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_body_server(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory("--parallel", "1", "--max-body-bytes", "2048")


def test_body_over_limit_is_413(small_body_server: ServerProcess) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    with small_body_server.http() as http:
        r = http.post("/chat/completions", json=big)
        err = assert_error(r, 413)
        assert err["code"] == "request_too_large"
        assert "2048" in err["message"]
        r = http.post("/responses", json={**RESP, "input": "x" * 4096})
        assert_error(r, 413)
        # A body under the limit still works on the same server.
        r = http.post("/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text


def test_chunked_body_over_limit_is_413(small_body_server: ServerProcess) -> None:
    """Without a content-length header the limit is enforced while reading: still a 413."""
    payload = httpx.Request("POST", "/", json={**CHAT, "messages": [{"role": "user", "content": "x" * 8192}]}).content

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 1024):
            yield payload[i:i + 1024]

    with small_body_server.http() as http:
        r = http.post("/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert_error(r, 413)


def test_openai_client_body_over_limit(small_body_server: ServerProcess) -> None:
    with small_body_server.client() as c, pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x" * 4096}])
    assert info.value.status_code == 413


# -- auth ------------------------------------------------------------------------------------------

def check_auth(srv: ServerProcess, good_keys: list[str]) -> None:
    with srv.http() as http:
        r = http.post("/chat/completions", json=CHAT)
        assert_error(r, 401, error_type="authentication_error")
        r = http.get("/models", headers={"authorization": "Bearer wrong"})
        assert_error(r, 401, error_type="authentication_error")
        r = http.get("/models", headers={"authorization": f"Basic {good_keys[0]}"})
        assert_error(r, 401)
        # /health stays open for load balancers.
        assert http.get(f"{srv.root_url}/health").status_code == 200
    for bad in ("wrong-key", good_keys[0] + "x"):
        with srv.client(api_key=bad) as c:
            with pytest.raises(openai.AuthenticationError) as info:
                c.models.list()
            assert info.value.status_code == 401
            with pytest.raises(openai.AuthenticationError):
                c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=2)
            with pytest.raises(openai.AuthenticationError):
                c.responses.create(model=MODEL_ID, input="Hi", max_output_tokens=2)
    for key in good_keys:
        with srv.client(api_key=key) as c:
            assert [m.id for m in c.models.list().data] == [MODEL_ID]
            r = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=2)
            assert r.usage.completion_tokens == 2
            resp = c.responses.create(model=MODEL_ID, input="Hi", max_output_tokens=2)
            assert resp.usage.output_tokens == 2


def test_api_key_flag(server_factory: ServerFactory) -> None:
    srv = server_factory("--parallel", "1", "--api-key", "secret-key-one-0001", "--api-key", "secret-key-two-0002")
    check_auth(srv, ["secret-key-one-0001", "secret-key-two-0002"])
    assert "secret-key-one-0001" not in srv.log_text()


def test_api_keys_env(server_factory: ServerFactory) -> None:
    srv = server_factory("--parallel", "1", env={"SHOAL_API_KEYS": "env-key-alpha-0001, env-key-beta-00002"})
    check_auth(srv, ["env-key-alpha-0001", "env-key-beta-00002"])


def test_public_host_without_keys_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_API_KEYS", "SHOAL_DATABASE_URL")}
    env.update(SHOAL_HOME=str(tmp_path / "home"), SHOAL_MODEL_CACHE=str(tmp_path / "cache"))
    # The model does not exist: the check must fail before any model is looked at.
    cmd = [sys.executable, "-m", "shoal.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port()),
           "--model", str(tmp_path / "missing.gguf")]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    out = proc.stderr + proc.stdout
    assert "auth" in out.lower()
    assert "--api-key" in out
    assert "0.0.0.0" in out
    assert not (tmp_path / "cache").exists()
