"""The context-headers middleware: rate-limit headers reach every response, errors and streams too."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from shoal.auth.headers import ContextHeaders
from shoal.core.context import RequestContext
from shoal.errors import RateLimitError, install_error_handlers


def app() -> FastAPI:
    application = FastAPI()
    install_error_handlers(application)

    def set_context(request: Request) -> None:
        request.state.context = RequestContext(headers={"x-ratelimit-limit-requests": "5", "x-a": "1"})

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

    application.add_middleware(ContextHeaders)
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
