"""The HTTP surface with a scripted backend: statuses, error shapes, streams, auth, the catalog."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from shoal.core.backend import BackendFailure
from shoal.core.types import Finish, ReasoningDelta, TextDelta, Usage
from tests.api.responses.sdk import sdk_accumulate, validate_event
from tests.frames import data_payloads, split_frames
from tests.scripted import ScriptedBackend, make_app, text_script

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
RESP = {"model": "test-model", "input": "hi"}


SHARED = ScriptedBackend()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One app for the module (starting one costs ~0.1 s); ``backend`` resets its backend per test.

    One slot and no queue: a slot that leaks makes the next request a 503 rather than a hang.
    """
    with make_app(SHARED, max_queue=0) as c:
        yield c


@pytest.fixture(scope="module")
def auth_client() -> Iterator[TestClient]:
    with make_app(SHARED, api_keys=("k1-0123456789abcdef", "k2-0123456789abcdef"), max_queue=0) as c:
        yield c


@pytest.fixture
def backend() -> ScriptedBackend:
    return SHARED.reset()


@pytest.fixture
def own_backend() -> ScriptedBackend:
    return ScriptedBackend()


def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def response_events(resp: Any) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in split_frames(resp.content):
        if "data" in frame:
            events.append(json.loads(frame["data"]))
            assert frame["event"] == events[-1]["type"]
    return events


# -- happy paths --------------------------------------------------------------------------

def test_chat_completion(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*text_script("Hello", " there", usage=Usage(10, 2, cached_tokens=4)))
    resp = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5, "temperature": 0})
    assert resp.status_code == 200 and resp.headers["x-shoal-model"] == "test-model"
    body = ChatCompletion.model_validate(resp.json())
    assert body.choices[0].message.content == "Hello there"
    assert body.usage is not None and body.usage.prompt_tokens_details is not None
    assert body.usage.prompt_tokens_details.cached_tokens == 4
    assert body.id.startswith("chatcmpl-")
    assert backend.requests[-1].sampling.max_tokens == 5


def test_chat_stream_even_with_accept_json(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(ReasoningDelta("hm"), TextDelta("ok"), Finish("stop", Usage(1, 2)))
    resp = client.post("/v1/chat/completions", headers={"accept": "application/json"},
                       json={**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert resp.content.endswith(b"data: [DONE]\n\n")
    payloads = data_payloads(resp.content)
    assert payloads[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(p) for p in payloads[:-1]]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None, None, None, "stop"]
    assert len({c.id for c in chunks}) == 1


def test_responses(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(ReasoningDelta("think"), TextDelta("Paris"), Finish("stop", Usage(3, 2)))
    resp = client.post("/v1/responses", json={**RESP, "instructions": "be brief", "max_tokens": 9})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["output"][0]["type"] == "reasoning"
    assert body["output"][1]["content"][0]["text"] == "Paris"
    assert body["max_output_tokens"] == 9
    assert backend.requests[-1].messages[0].role == "system"
    validate_event({"type": "response.completed", "sequence_number": 0, "response": body})


def test_responses_stream_equals_non_stream(client: TestClient, backend: ScriptedBackend) -> None:
    script = [ReasoningDelta("a"), TextDelta("b"), TextDelta("c"), Finish("length", Usage(3, 3))]
    backend.add(*script).add(*script)
    whole = client.post("/v1/responses", json=RESP).json()
    events = response_events(client.post("/v1/responses", json={**RESP, "stream": True}))
    for e in events:
        validate_event(e)
    assert sdk_accumulate(events) is None  # incomplete: the SDK's get_final_response() would refuse
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    strip = ("id", "created_at", "created", "completed_at")
    assert {k: v for k, v in final.items() if k not in strip and k != "output"} == \
        {k: v for k, v in whole.items() if k not in strip and k != "output"}
    assert [{k: v for k, v in o.items() if k != "id"} for o in final["output"]] == \
        [{k: v for k, v in o.items() if k != "id"} for o in whole["output"]]


def test_models(client: TestClient) -> None:
    resp = client.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    (card,) = body["data"]
    model = Model.model_validate(card)
    assert (model.id, model.object, model.owned_by, model.created) == ("test-model", "model", "shoal", 1700000000)
    assert card["context_length"] == 4096 and card["aliases"] == ["test-alias"]
    assert client.get("/v1/models/test-alias").json()["id"] == "test-model"
    assert error_of(client.get("/v1/models/nope"), 404)["code"] == "model_not_found"


def test_alias_is_served_by_its_model(client: TestClient) -> None:
    resp = client.post("/v1/chat/completions", json={**CHAT, "model": "test-alias"})
    assert resp.json()["model"] == "test-model"


def test_unknown_field_is_ignored_and_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shoal.api")
    assert client.post("/v1/chat/completions", json={**CHAT, "foo": 1}).status_code == 200
    assert client.post("/v1/responses", json={**RESP, "bar": {"x": 1}}).status_code == 200
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "shoal.api")
    assert "foo" in logged and "bar" in logged


# -- request errors --------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_malformed_json_is_400(client: TestClient, path: str) -> None:
    err = error_of(client.post(path, content=b'{"model": ', headers={"content-type": "application/json"}), 400)
    assert err["type"] == "invalid_request_error"
    assert "JSON" in err["message"]


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", {**CHAT, "temperature": 3}, "temperature"),
    ("/v1/chat/completions", {"model": "test-model"}, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "tool", "content": "x"}]}, "messages.0"),
    ("/v1/chat/completions", {**CHAT, "tool_choice": "required"}, "tool_choice"),
    ("/v1/responses", {**RESP, "max_output_tokens": 0}, "max_output_tokens"),
    ("/v1/responses", {**RESP, "include": ["nope"]}, "include"),
    ("/v1/responses", {**RESP, "metadata": {"k": "v" * 600}}, "metadata"),
])
def test_validation_is_400_with_param(client: TestClient, path: str, body: dict[str, Any], param: str) -> None:
    err = error_of(client.post(path, json=body), 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param


@pytest.mark.parametrize(("path", "body"), [("/v1/chat/completions", CHAT), ("/v1/responses", RESP)])
@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404(client: TestClient, path: str, body: dict[str, Any], stream: bool) -> None:
    err = error_of(client.post(path, json={**body, "model": "gpt-nope", "stream": stream}), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model" and "gpt-nope" in err["message"]


def test_unknown_route_is_404_json(client: TestClient) -> None:
    error_of(client.get("/v1/nothing-here"), 404)


def test_body_too_large_by_content_length(own_backend: ScriptedBackend) -> None:
    with make_app(own_backend, max_body_bytes=200) as client:
        err = error_of(client.post("/v1/chat/completions", json={**CHAT, "user": "x" * 300}), 413)
        assert err["code"] == "request_too_large"
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert own_backend.requests and len(own_backend.requests) == 1


def test_body_too_large_when_chunked(own_backend: ScriptedBackend) -> None:
    payload = json.dumps({**CHAT, "user": "x" * 300}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 64):
            yield payload[i:i + 64]

    with make_app(own_backend, max_body_bytes=200) as client:
        resp = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in resp.request.headers
        error_of(resp, 413)


def test_chunked_body_under_the_limit_passes(own_backend: ScriptedBackend) -> None:
    payload = json.dumps(CHAT).encode()
    with make_app(own_backend, max_body_bytes=10_000) as client:
        resp = client.post("/v1/chat/completions", content=iter([payload[:10], payload[10:]]),
                           headers={"content-type": "application/json"})
        assert resp.status_code == 200, resp.text


# -- backend failures ------------------------------------------------------------------------

@pytest.mark.parametrize(("failure", "status", "etype"), [
    (BackendFailure("prompt is too long", client_error=True, code="context_length_exceeded"), 400,
     "invalid_request_error"),
    (BackendFailure("engine crashed"), 502, "server_error"),
])
@pytest.mark.parametrize(("path", "body"), [("/v1/chat/completions", CHAT), ("/v1/responses", RESP)])
@pytest.mark.parametrize("stream", [False, True])
def test_failure_before_first_event_is_a_json_error(client: TestClient, backend: ScriptedBackend,
                                                   failure: Exception, status: int, etype: str, path: str,
                                                   body: dict[str, Any], stream: bool) -> None:
    backend.add(failure)
    err = error_of(client.post(path, json={**body, "stream": stream}), status)
    assert err["type"] == etype
    assert err["code"] == (failure.code or "backend_error")  # type: ignore[attr-defined]
    assert client.post(path, json=body).status_code == 200  # the slot was freed


def test_chat_failure_after_streaming_began_is_an_error_frame(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(TextDelta("partial"), BackendFailure("engine crashed"))
    resp = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 200
    payloads = data_payloads(resp.content)
    assert payloads[-1] == "[DONE]"
    assert payloads[-2] == {"error": {"message": "engine crashed", "type": "server_error", "param": None,
                                      "code": "backend_error"}}
    assert ChatCompletionChunk.model_validate(payloads[1]).choices[0].delta.content == "partial"
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200  # slot freed


def test_chat_non_stream_failure_mid_generation_is_502(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(TextDelta("partial"), BackendFailure("engine crashed"))
    error_of(client.post("/v1/chat/completions", json=CHAT), 502)
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_responses_failure_after_streaming_began_is_response_failed(client: TestClient,
                                                                    backend: ScriptedBackend) -> None:
    backend.add(ReasoningDelta("r"), TextDelta("partial"), BackendFailure("engine crashed"))
    events = response_events(client.post("/v1/responses", json={**RESP, "stream": True}))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.failed"
    assert sum(e["type"].startswith("response.") and e["type"].split(".")[1] in ("completed", "failed", "incomplete")
               for e in events) == 1
    assert events[-1]["response"]["error"]["message"] == "engine crashed"
    for e in events:
        validate_event(e)
    assert client.post("/v1/responses", json=RESP).status_code == 200  # slot freed


# -- auth --------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "code"), [
    ({}, "missing_api_key"),
    ({"authorization": "Bearer wrong"}, "invalid_api_key"),
    ({"authorization": "k1-0123456789abcdef"}, "invalid_api_key"),
    ({"authorization": "Basic k1-0123456789abcdef"}, "invalid_api_key"),
])
@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/models", None), ("POST", "/v1/chat/completions", CHAT), ("POST", "/v1/responses", RESP)])
def test_auth_rejects(auth_client: TestClient, backend: ScriptedBackend, headers: dict[str, str], code: str,
                      method: str, path: str, body: Any) -> None:
    err = error_of(auth_client.request(method, path, json=body, headers=headers), 401)
    assert err["type"] == "authentication_error" and err["code"] == code
    assert backend.requests == []


def test_auth_accepts_each_key(auth_client: TestClient, backend: ScriptedBackend) -> None:
    assert auth_client.get("/v1/models", headers={"authorization": "Bearer k1-0123456789abcdef"}).status_code == 200
    assert auth_client.post("/v1/chat/completions", json=CHAT,
                            headers={"authorization": "bearer  k2-0123456789abcdef"}).status_code == 200
    assert auth_client.get("/health").status_code == 200  # no key needed for liveness
    assert len(backend.requests) == 1


def test_auth_with_malformed_body_is_a_json_error(auth_client: TestClient) -> None:
    resp = auth_client.post("/v1/chat/completions", content=b"{not json",
                            headers={"content-type": "application/json"})
    assert resp.status_code in (400, 401)  # either order is fine; a JSON error, not a 500
    error_of(resp, resp.status_code)


def test_backend_closed_on_shutdown(own_backend: ScriptedBackend) -> None:
    with make_app(own_backend):
        assert not own_backend.closed
    assert own_backend.closed
