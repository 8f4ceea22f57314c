"""The edge layer: the caller's headers on every response, the body limit, and the directly called routes."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.testclient import TestClient

from shoal.api.edge import Edge
from shoal.core.context import RequestContext
from shoal.errors import InvalidRequestError, RateLimitError, install_error_handlers


JSON = {"content-type": "application/json"}


def set_context(request: Request) -> None:
    request.state.context = RequestContext(headers={"x-ratelimit-limit-requests": "5", "x-a": "1"})


async def direct(request: Request) -> Response:
    """A directly called endpoint: reads its body, fails like a real one would."""
    set_context(request)
    body = await request.body()
    if body == b"boom":
        raise RuntimeError("a bug")
    if body == b"bad":
        raise InvalidRequestError("bad body", param="x")
    return JSONResponse({"len": len(body), "via": request.scope.get("route") is None})


def app(limit: int = 64, loopback_only: bool = False) -> FastAPI:
    application = FastAPI()
    install_error_handlers(application)

    @application.get("/ok")
    async def ok(request: Request) -> dict[str, str]:
        set_context(request)
        return {"ok": "yes"}

    @application.get("/fail")
    async def fail(request: Request) -> None:
        set_context(request)
        raise RateLimitError("slow down", headers={"retry-after": "3", "x-a": "2"})

    @application.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        set_context(request)

        async def body():  # type: ignore[no-untyped-def]
            yield b"data: 1\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    @application.get("/none")
    async def none() -> dict[str, str]:
        return {}

    @application.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"len": len(await request.body())}

    application.add_route("/direct", direct, methods=["POST"])  # registered too, as the real routers do
    application.add_middleware(Edge, limit=limit, direct={("POST", "/direct"): direct}, loopback_only=loopback_only)
    return application


def test_headers_on_success_error_and_stream() -> None:
    with TestClient(app()) as client:
        ok = client.get("/ok")
        assert ok.headers["x-ratelimit-limit-requests"] == "5" and ok.headers["x-a"] == "1"
        fail = client.get("/fail")
        assert fail.status_code == 429 and fail.headers["retry-after"] == "3"
        assert fail.headers["x-ratelimit-limit-requests"] == "5"
        assert fail.headers.get_list("x-a") == ["2"]  # the error's own value wins, no duplicate
        stream = client.get("/stream")
        assert stream.headers["x-ratelimit-limit-requests"] == "5"
        assert "x-ratelimit-limit-requests" not in client.get("/none").headers


def test_bodies_over_the_limit_get_413_by_header_or_by_counting() -> None:
    with TestClient(app(limit=16)) as client:
        for path in ("/echo", "/direct"):
            assert client.post(path, content=b"x" * 16, headers=JSON).status_code == 200
            too_big = client.post(path, content=b"x" * 17, headers=JSON)
            assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "invalid_request_error"

            def chunks():  # type: ignore[no-untyped-def]
                yield b"x" * 10
                yield b"x" * 10

            streamed = client.post(path, content=chunks(), headers=JSON)  # no content-length: counted while read
            assert streamed.status_code == 413, path


def test_direct_routes_skip_the_router_and_render_errors_like_the_app() -> None:
    with TestClient(app(), raise_server_exceptions=False) as client:
        ok = client.post("/direct", content=b"abc", headers=JSON)
        assert ok.json() == {"len": 3, "via": True} and ok.headers["x-ratelimit-limit-requests"] == "5"
        bad = client.post("/direct", content=b"bad", headers=JSON)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x"
        assert bad.headers["x-a"] == "1"
        boom = client.post("/direct", content=b"boom", headers=JSON)
        assert boom.status_code == 500 and boom.json()["error"]["type"] == "server_error"
        assert client.get("/direct").status_code == 405  # other methods still go through the router


def assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:8000",
                                  "LOCALHOST:9"])
def test_loopback_hosts_are_answered_with_auth_off(host: str) -> None:
    with TestClient(app(loopback_only=True), base_url=f"http://{host}") as client:
        assert client.get("/ok").status_code == 200
        assert client.post("/direct", content=b"{}", headers=JSON).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil",
                                  "[::2]:8000", "0.0.0.0:8000", "[::1"])
def test_other_hosts_are_refused_with_auth_off(host: str) -> None:
    # DNS rebinding: a page on evil.example resolves its own name to 127.0.0.1 and reads the answers.
    with TestClient(app(loopback_only=True), base_url="http://127.0.0.1") as client:
        for method, path in (("GET", "/ok"), ("POST", "/direct"), ("POST", "/echo")):
            refused = client.request(method, path, content=b"{}", headers={**JSON, "host": host})
            assert_error(refused, 421, "host_not_allowed")
            assert "localhost" in refused.json()["error"]["message"]
    with TestClient(app(loopback_only=False)) as client:
        assert client.get("/ok", headers={"host": host}).status_code == 200  # with auth on the key is the guard


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
                                   "application/jsonx", "text/json", None])
def test_post_bodies_must_be_json(media: str | None) -> None:
    # A page may POST text/plain (or a form) to 127.0.0.1 without the browser asking first; never JSON.
    headers = {} if media is None else {"content-type": media}
    with TestClient(app()) as client:
        for path in ("/direct", "/echo"):
            refused = client.post(path, content=b'{"model": "x"}', headers=headers)
            assert_error(refused, 415, "unsupported_media_type")


@pytest.mark.parametrize("media", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_bodies_and_bodiless_posts_pass(media: str) -> None:
    with TestClient(app()) as client:
        assert client.post("/direct", content=b"{}", headers={"content-type": media}).status_code == 200
        assert client.post("/echo").json() == {"len": 0}  # no body, no type: the console's revoke and rotate
        assert client.get("/ok", headers={"content-type": "text/plain"}).status_code == 200  # only bodies count
