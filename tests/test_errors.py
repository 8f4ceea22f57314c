"""The error hierarchy and the one error shape."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from shoal.errors import (
    AuthenticationError,
    BackendError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ShoalError,
    error_response,
    install_error_handlers,
)


@pytest.mark.parametrize(("cls", "status", "etype", "code"), [
    (ShoalError, 500, "server_error", None),
    (InvalidRequestError, 400, "invalid_request_error", None),
    (AuthenticationError, 401, "authentication_error", "invalid_api_key"),
    (PermissionDeniedError, 403, "permission_error", None),
    (NotFoundError, 404, "not_found_error", None),
    (PayloadTooLargeError, 413, "invalid_request_error", "request_too_large"),
    (RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
    (OverloadedError, 503, "server_error", "overloaded"),
    (BackendError, 502, "server_error", "backend_error"),
])
def test_classes(cls: type[ShoalError], status: int, etype: str, code: str | None) -> None:
    err = cls("msg")
    assert err.status_code == status
    assert err.to_dict() == {"message": "msg", "type": etype, "param": None, "code": code}
    assert cls("m", code="custom", param="p").to_dict() == {"message": "m", "type": etype, "param": "p",
                                                             "code": "custom"}


def test_model_not_found() -> None:
    err = ModelNotFoundError("gpt-x")
    assert isinstance(err, NotFoundError)
    assert err.to_dict() == {"message": "The model `gpt-x` does not exist or you do not have access to it.",
                             "type": "not_found_error", "param": "model", "code": "model_not_found"}


def test_error_response_status_body_headers() -> None:
    resp = error_response(OverloadedError("busy", headers={"retry-after": "2"}))
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "2"
    assert json.loads(resp.body) == {"error": {"message": "busy", "type": "server_error", "param": None,
                                               "code": "overloaded"}}


class Body(BaseModel):
    name: str
    items: list[int] = Field(max_length=2)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/shoal")
    async def shoal() -> None:
        raise RateLimitError("slow down", headers={"retry-after": "5"})

    @app.get("/http/{status}")
    async def http(status: int) -> None:
        raise HTTPException(status, detail="nope")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def error(resp, status: int) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_shoal_error_with_headers(client: TestClient) -> None:
    resp = client.get("/shoal")
    assert error(resp, 429)["type"] == "rate_limit_error"
    assert resp.headers["retry-after"] == "5"


def test_validation_names_the_param(client: TestClient) -> None:
    err = error(client.post("/echo", json={"items": [1]}), 400)
    assert err["param"] == "name" and err["type"] == "invalid_request_error"
    assert "'name'" in err["message"]
    nested = error(client.post("/echo", json={"name": "x", "items": [1, "a"]}), 400)
    assert nested["param"] == "items.1"


def test_malformed_json(client: TestClient) -> None:
    err = error(client.post("/echo", content=b"{", headers={"content-type": "application/json"}), 400)
    assert err["param"] is None and "JSON" in err["message"]


@pytest.mark.parametrize(("status", "etype"), [(404, "not_found_error"), (401, "authentication_error"),
                                               (413, "invalid_request_error"), (405, "invalid_request_error")])
def test_http_exceptions_keep_their_status(client: TestClient, status: int, etype: str) -> None:
    err = error(client.get(f"/http/{status}"), status)
    assert err["type"] == etype and err["message"] == "nope"


def test_method_not_allowed_and_unknown_route(client: TestClient) -> None:
    error(client.get("/echo"), 405)
    error(client.get("/missing"), 404)


def test_unexpected_exception_is_a_500_without_internals(client: TestClient) -> None:
    err = error(client.get("/boom"), 500)
    assert err["type"] == "server_error"
    assert "secret" not in err["message"]


def test_union_branch_labels_are_left_out_of_the_param() -> None:
    from shoal.errors import _path

    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
    # pydantic's location names the union branches it tried ("parts", the "image_url" tag).
    loc = ("body", "messages", 0, "content", "parts", 0, "image_url", "image_url", "url")
    assert _path(loc, body, missing=False) == ["messages", "0", "content", "0", "image_url", "url"]
    body["messages"][0]["content"] = [{"type": "image_url"}]
    loc = ("body", "messages", 0, "content", "parts", 0, "image_url", "image_url")
    assert _path(loc, body, missing=True) == ["messages", "0", "content", "0", "image_url"]  # the missing field
    assert _path(("body", "messages", 0, "message"), body, missing=False) == ["messages", "0"]  # a model's own check


def test_an_unreachable_database_is_a_503_to_retry_not_a_500() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    from shoal.errors import response_for

    down = response_for(OperationalError("SELECT 1", {}, ConnectionRefusedError("refused")))
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert json.loads(down.body)["error"]["code"] == "storage_unavailable"
    assert response_for(ConnectionResetError("reset")).status_code == 503
    # A statement the database refused is a bug, not an outage.
    assert response_for(IntegrityError("INSERT", {}, Exception("duplicate"))).status_code == 500
