"""The edge layer: the caller's headers on every response, the body limit, and the directly called routes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.testclient import TestClient

from shoal.api.edge import Edge
from shoal.core.context import RequestContext
from shoal.errors import InvalidRequestError, RateLimitError, install_error_handlers


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


def app(limit: int = 64) -> FastAPI:
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
    application.add_middleware(Edge, limit=limit, direct={("POST", "/direct"): direct})
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
            assert client.post(path, content=b"x" * 16).status_code == 200
            too_big = client.post(path, content=b"x" * 17)
            assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "invalid_request_error"

            def chunks():  # type: ignore[no-untyped-def]
                yield b"x" * 10
                yield b"x" * 10

            streamed = client.post(path, content=chunks())  # no content-length: counted while read
            assert streamed.status_code == 413, path


def test_direct_routes_skip_the_router_and_render_errors_like_the_app() -> None:
    with TestClient(app(), raise_server_exceptions=False) as client:
        ok = client.post("/direct", content=b"abc")
        assert ok.json() == {"len": 3, "via": True} and ok.headers["x-ratelimit-limit-requests"] == "5"
        bad = client.post("/direct", content=b"bad")
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x"
        assert bad.headers["x-a"] == "1"
        boom = client.post("/direct", content=b"boom")
        assert boom.status_code == 500 and boom.json()["error"]["type"] == "server_error"
        assert client.get("/direct").status_code == 405  # other methods still go through the router
