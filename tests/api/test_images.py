"""Image inputs through the HTTP app: validation 400s, capability routing, the image reaching the backend,
and stored input items showing the image back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoal.core.backend import ModelCard
from shoal.core.types import ImageInput
from tests.scripted import CARD, ScriptedBackend, make_app

SEEING = ModelCard(id="seeing-model", owned_by="shoal", created=1700000000, context_length=8192,
                   capabilities=("chat", "vision"))
PNG = "data:image/png;base64,iVBORw0KGgo="
CHAT_IMAGE = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                           {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]}]
RESP_IMAGE = [{"role": "user", "content": [{"type": "input_text", "text": "Describe"},
                                           {"type": "input_image", "image_url": "https://example.com/a.png"}]}]
BACKEND = ScriptedBackend(cards=[CARD, SEEING])


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_app(BACKEND) as c:
        yield c


@pytest.fixture
def backend() -> ScriptedBackend:
    return BACKEND.reset()


def error_of(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": CHAT_IMAGE}),
    ("/v1/responses", {"input": RESP_IMAGE}),
])
def test_an_image_for_a_model_without_vision_is_model_not_capable(
        client: TestClient, backend: ScriptedBackend, path: str, body: dict[str, Any]) -> None:
    err = error_of(client.post(path, json={"model": "test-model", **body}))
    assert err["code"] == "model_not_capable" and err["param"] == "model" and "vision" in err["message"]
    assert backend.requests == []  # the blind model never saw the request


def test_a_chat_image_reaches_a_vision_backend(client: TestClient, backend: ScriptedBackend) -> None:
    resp = client.post("/v1/chat/completions", json={"model": "seeing-model", "messages": CHAT_IMAGE})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "ok"
    (request,) = backend.requests
    assert request.messages[0].parts == ("What is this?", ImageInput(PNG, "low"))
    assert request.messages[0].content == "What is this?"


def test_a_responses_image_is_stored_listed_and_replayed(client: TestClient, backend: ScriptedBackend) -> None:
    first = client.post("/v1/responses", json={"model": "seeing-model", "input": RESP_IMAGE})
    assert first.status_code == 200, first.text
    assert backend.requests[0].images == (ImageInput("https://example.com/a.png", "auto"),)
    rid = first.json()["id"]
    items = client.get(f"/v1/responses/{rid}/input_items", params={"order": "asc"}).json()["data"]
    assert items[0]["content"] == [{"type": "input_text", "text": "Describe"},
                                   {"type": "input_image", "image_url": "https://example.com/a.png",
                                    "detail": "auto"}]
    follow = client.post("/v1/responses", json={"model": "seeing-model", "input": "And the colour?",
                                                "previous_response_id": rid})
    assert follow.status_code == 200, follow.text
    history = backend.requests[1].messages
    assert history[0].images == (ImageInput("https://example.com/a.png"),)  # the image is history now
    # ...so a follow-up on a model without vision is refused too, rather than dropping the image.
    err = error_of(client.post("/v1/responses", json={"model": "test-model", "input": "again?",
                                                      "previous_response_id": rid}))
    assert err["code"] == "model_not_capable"


@pytest.mark.parametrize(("path", "body", "param", "words"), [
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input.0.content.0.file_id", "'file_id' is not supported"),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input.0.content.0.image_url", "Field required"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages.0.content.0.image_url", "Field required"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]},
     "messages.0.content.0.image_url.url", "must be an http(s) URL"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "video_url"}]}]},
     "messages.0.content.0", "'video_url'"),
])
def test_bad_image_parts_are_400_naming_the_field(client: TestClient, backend: ScriptedBackend, path: str,
                                                  body: dict[str, Any], param: str, words: str) -> None:
    err = error_of(client.post(path, json={"model": "seeing-model", **body}))
    assert err["param"] == param and words in err["message"], err
    assert not err["message"].startswith("Value error")
    assert backend.requests == []
