"""The console's HTTP surface (scripted backend): the page and its headers, sign-in, cookies, CSRF, the session
standing for the admin token on /admin and /v1, and the live deployments endpoint."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shoal.console.router import static_dir
from shoal.console.session import COOKIE, SECURE_COOKIE
from tests.scripted import ScriptedBackend, make_app

TOKEN = "adm-console-test-token-0123456789"
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
LOOPBACK = "http://127.0.0.1:8000"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_app(ScriptedBackend(capacity=2), admin_token=TOKEN,
                  prices={"test-model": {"input": 1, "output": 2}}) as c:
        c.base_url = LOOPBACK  # type: ignore[assignment]
        yield c


def sign_in(client: TestClient) -> str:
    """Sign in; the CSRF token."""
    r = client.post("/console/session", json={"token": TOKEN})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf_token"])


def test_page_has_strict_headers_no_inline_script_and_no_secret(client: TestClient) -> None:
    sign_in(client)
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert TOKEN not in html and "csrf" not in html.lower()
    assert re.findall(r"<script\b(?![^>]*\bsrc=)", html) == [], "inline scripts are refused by the CSP"
    assert " style=" not in html and "<style" not in html
    for ref in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html):
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["content-security-policy"] == csp
    module = client.get("/console/static/js/playground.js")
    assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
    assert client.get("/console/static/../router.py").status_code == 404


def test_static_files_fetch_nothing_from_outside() -> None:
    """Everything the page loads is in the package: no CDN, no absolute URL but the SVG namespace."""
    files = [p for p in static_dir().rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "app.css", "app.js", "api.js", "playground.js", "usage.js"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)
        assert "eval(" not in text and "innerHTML" not in text, path.name


def test_package_data_ships_every_static_file() -> None:
    """pyproject's package-data patterns cover every file of the console (a plain ``pip install .`` ships them)."""
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["shoal"]
    root = Path(str(static_dir())).parents[1]  # src/shoal
    for path in Path(str(static_dir())).rglob("*"):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), rel


def test_wrong_token_is_401_without_a_cookie_and_is_not_logged(client: TestClient,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = client.post("/console/session", json={"token": "wrong-" + TOKEN})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
    assert "set-cookie" not in r.headers
    assert client.get("/console/session").json()["signed_in"] is False
    sign_in(client)
    assert TOKEN not in caplog.text


def test_session_cookie_flags_on_loopback_http(client: TestClient) -> None:
    r = client.post("/console/session", json={"token": TOKEN})
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # a browser would not send a Secure cookie back over http://127.0.0.1
    assert any(f.startswith("max-age=") and 0 < int(f.split("=")[1]) <= 8 * 3600 for f in flags)
    assert TOKEN not in cookie
    state = r.json()
    assert state["signed_in"] is True and state["csrf_token"] and state["admin_api"] is True
    assert client.get("/console/session").json()["csrf_token"] == state["csrf_token"]
    assert r.headers["cache-control"] == "no-store"


def test_session_cookie_is_secure_and_host_prefixed_over_https(client: TestClient) -> None:
    client.base_url = "https://console.example"  # type: ignore[assignment]
    r = client.post("/console/session", json={"token": TOKEN})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "secure", "path=/"} <= flags
    assert not any(f.startswith("domain=") for f in flags)
    csrf = r.json()["csrf_token"]
    assert client.get("/admin/keys").status_code == 200
    assert client.post("/admin/keys", json={"name": "x"}, headers={"x-csrf-token": csrf}).status_code == 201


def test_sign_in_needs_https_off_loopback(client: TestClient) -> None:
    client.base_url = "http://console.example"  # type: ignore[assignment]
    r = client.post("/console/session", json={"token": TOKEN})
    assert r.status_code == 400 and r.json()["error"]["code"] == "https_required"
    assert "set-cookie" not in r.headers


def test_admin_api_takes_the_session_with_csrf_on_state_changes(client: TestClient) -> None:
    assert client.get("/admin/keys").status_code == 401
    csrf = sign_in(client)
    assert client.get("/admin/keys").status_code == 200
    assert client.get("/admin/usage?by=day").status_code == 200
    missing = client.post("/admin/keys", json={"name": "x"})
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf_failed"
    assert client.post("/admin/keys", json={"name": "x"}, headers={"x-csrf-token": csrf + "0"}).status_code == 403
    cross = client.post("/admin/keys", json={"name": "x"},
                        headers={"x-csrf-token": csrf, "origin": "https://evil.example"})
    assert cross.status_code == 403
    cross_site = client.post("/admin/keys", json={"name": "x"},
                             headers={"x-csrf-token": csrf, "sec-fetch-site": "cross-site"})
    assert cross_site.status_code == 403
    proxied = {"x-csrf-token": csrf, "origin": "https://shoal.example", "sec-fetch-site": "same-origin"}
    assert client.post("/admin/keys", json={"name": "x"}, headers=proxied).status_code == 201, \
        "behind a proxy rewriting Host, the browser's Sec-Fetch-Site verdict decides"
    ok = client.post("/admin/keys", json={"name": "x"}, headers={"x-csrf-token": csrf, "origin": LOOPBACK})
    assert ok.status_code == 201 and ok.json()["key"].startswith("sk-shoal-")
    key_id = ok.json()["id"]
    assert client.post(f"/admin/keys/{key_id}/revoke").status_code == 403
    assert client.post(f"/admin/keys/{key_id}/rotate", headers={"x-csrf-token": csrf}).status_code == 200


def test_a_bearer_wins_over_the_session(client: TestClient) -> None:
    """With an Authorization header the cookie is ignored: a model access key is never an admin."""
    csrf = sign_in(client)
    key = client.post("/admin/keys", json={"name": "k"}, headers={"x-csrf-token": csrf}).json()["key"]
    as_key = {"authorization": f"Bearer {key}", "x-csrf-token": csrf}
    assert client.get("/admin/keys", headers=as_key).status_code == 401
    assert client.post("/v1/chat/completions", json=CHAT, headers=as_key).status_code == 200
    assert client.get("/admin/keys", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_playground_calls_v1_with_the_session(client: TestClient) -> None:
    assert client.get("/v1/models").status_code == 401
    csrf = sign_in(client)
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["test-model"]
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 403
    r = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-csrf-token": csrf})
    assert r.status_code == 200 and "data: [DONE]" in r.text
    usage = client.get("/admin/usage?by=key").json()["data"]
    assert [row["key"] for row in usage] == ["console:admin"]


def test_sign_out_ends_the_session(client: TestClient) -> None:
    csrf = sign_in(client)
    old = client.cookies.get(COOKIE)
    assert client.delete("/console/session").status_code == 403  # CSRF-checked too
    r = client.delete("/console/session", headers={"x-csrf-token": csrf})
    assert r.status_code == 200 and r.json()["signed_in"] is False
    assert f"{COOKIE}=" in r.headers["set-cookie"] and "max-age=0" in r.headers["set-cookie"].lower()
    assert client.get("/admin/keys").status_code == 401
    client.cookies.set(COOKIE, old or "")
    assert client.get("/admin/keys").status_code == 401, "an ended session stays ended"


def test_forged_or_foreign_cookies_grant_nothing(client: TestClient) -> None:
    from shoal.console.session import ConsoleSessions

    forged, _ = ConsoleSessions("another-token").create()
    client.cookies.set(COOKIE, forged)
    assert client.get("/admin/keys").status_code == 401
    assert client.get("/v1/models").status_code == 401
    client.cookies.set(COOKIE, "v1.99999999999.abc.def")
    assert client.get("/admin/keys").status_code == 401


def test_without_an_admin_token_there_is_no_session() -> None:
    with make_app(ScriptedBackend(), api_keys=("static-key-0123456789",)) as client:
        client.base_url = LOOPBACK  # type: ignore[assignment]
        r = client.post("/console/session", json={"token": "anything"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "admin_api_disabled"
        state = client.get("/console/session").json()
        assert state["admin_api"] is False and state["signed_in"] is False and state["api_key_required"] is True
        from shoal.console.session import ConsoleSessions

        client.cookies.set(COOKIE, ConsoleSessions("static-key-0123456789").create()[0])
        assert client.get("/v1/models").status_code == 401
        assert client.get("/admin/keys").status_code == 404
        assert client.get("/").status_code == 200


def test_deployments_show_health_load_and_prices(client: TestClient) -> None:
    assert client.get("/console/api/deployments").status_code == 401
    sign_in(client)
    body = client.get("/console/api/deployments").json()
    [dep] = body["data"]
    assert dep["model"] == "test-model" and dep["health"] == "closed"
    assert (dep["running"], dep["queued"], dep["slots"]) == (0, 0, 2)
    assert body["prices"]["test-model"] == {"input": 1.0, "cached_input": 1.0, "output": 2.0}
