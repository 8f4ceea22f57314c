"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` over HTTP, driven by the real ``anthropic`` SDK.

The app runs in-process around a scripted backend (the SDK's HTTP client is the
app's TestClient), so these check the wire, auth and error shapes; the e2e suite
does the same against a real ``shoal serve``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from fastapi.testclient import TestClient

from shoal.core.backend import BackendFailure
from shoal.core.types import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from shoal.errors import RateLimitError
from tests.frames import split_frames
from tests.scripted import ScriptedBackend, make_app, text_script

SHARED = ScriptedBackend()
HI = [{"role": "user", "content": "hi"}]
TOOL = {"name": "get_weather", "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    """One slot and no queue: a slot that leaks makes the next request a 503 rather than a hang."""
    with make_app(SHARED, api_keys=("k1",), max_queue=0) as c:
        yield c


@pytest.fixture
def backend() -> ScriptedBackend:
    return SHARED.reset()


@pytest.fixture
def sdk(app: TestClient) -> anthropic.Anthropic:
    """The SDK with its key in ``x-api-key`` (its default), no retries."""
    return anthropic.Anthropic(base_url="http://testserver", api_key="k1", http_client=app, max_retries=0)


def test_create_plain(sdk: anthropic.Anthropic, backend: ScriptedBackend) -> None:
    backend.add(*text_script("Hello", " there", usage=Usage(12, 2)))
    message = sdk.messages.create(model="test-model", max_tokens=32, system="Be brief.", messages=HI,
                                  stop_sequences=["END"], metadata={"user_id": "u-1"})
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "test-model"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 2)
    seen = backend.requests[-1]
    assert seen.sampling.max_tokens == 32 and seen.sampling.stop == ("END",) and seen.user == "u-1"
    assert [m.role for m in seen.messages] == ["system", "user"]


def test_alias_and_bearer_token(app: TestClient, backend: ScriptedBackend) -> None:
    sdk = anthropic.Anthropic(base_url="http://testserver", auth_token="k1", http_client=app, max_retries=0)
    message = sdk.messages.create(model="test-alias", max_tokens=8, messages=HI)
    assert message.model == "test-model"


def test_stream_helper_accepts_the_events(sdk: anthropic.Anthropic, backend: ScriptedBackend) -> None:
    backend.add(*text_script("Hel", "lo", usage=Usage(5, 2)))
    with sdk.messages.stream(model="test-model", max_tokens=8, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello" and final.content[0].text == "Hello"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 2
    assert backend.requests[-1].stream


def test_thinking_transcript(sdk: anthropic.Anthropic, backend: ScriptedBackend) -> None:
    backend.add(ReasoningDelta("The user says hi."), ReasoningDelta(" Greet back."), TextDelta("Hi!"),
                Finish("stop", Usage(5, 9, reasoning_tokens=6)))
    with sdk.messages.stream(model="test-model", max_tokens=4096, messages=HI,
                             thinking={"type": "enabled", "budget_tokens": 2048}) as stream:
        thinking = "".join(e.thinking for e in stream if e.type == "thinking")
        final = stream.get_final_message()
    assert thinking == "The user says hi. Greet back."
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == thinking and final.content[0].signature  # type: ignore[union-attr]
    assert backend.requests[-1].reasoning_effort == "low"
    # The thinking block goes back as history, signature and all.
    backend.add(*text_script("ok"))
    sdk.messages.create(model="test-model", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
                        messages=[*HI, {"role": "assistant", "content": final.content}, {"role": "user",
                                                                                         "content": "again"}])
    assert backend.requests[-1].messages[1].reasoning == thinking


def test_tool_round_trip(sdk: anthropic.Anthropic, backend: ScriptedBackend) -> None:
    backend.add(ToolCallDelta(0, id="call_1", name="get_weather"), ToolCallDelta(0, arguments='{"city": "Paris"}'),
                Finish("tool_calls", Usage(20, 7)))
    message = sdk.messages.create(model="test-model", max_tokens=64, tools=[TOOL],  # type: ignore[list-item]
                                  tool_choice={"type": "tool", "name": "get_weather"},
                                  messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert message.stop_reason == "tool_use"
    call = message.content[0]
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "Paris"}
    assert backend.requests[-1].tool_choice.name == "get_weather"  # type: ignore[union-attr]
    backend.add(*text_script("It is 18C."))
    answer = sdk.messages.create(model="test-model", max_tokens=64, tools=[TOOL],  # type: ignore[list-item]
                                 messages=[{"role": "user", "content": "Weather in Paris?"},
                                           {"role": "assistant", "content": message.content},
                                           {"role": "user", "content": [{"type": "tool_result",
                                                                         "tool_use_id": call.id,
                                                                         "content": "18C"}]}])
    assert answer.content[0].text == "It is 18C."  # type: ignore[union-attr]
    roles = [(m.role, m.tool_call_id) for m in backend.requests[-1].messages]
    assert roles == [("user", None), ("assistant", None), ("tool", call.id)]


def test_stream_tool_use(sdk: anthropic.Anthropic, backend: ScriptedBackend) -> None:
    backend.add(ToolCallDelta(0, id="call_1", name="get_weather"), ToolCallDelta(0, arguments='{"city":'),
                ToolCallDelta(0, arguments=' "Oslo"}'), Finish("tool_calls", Usage(20, 7)))
    with sdk.messages.stream(model="test-model", max_tokens=64, tools=[TOOL],  # type: ignore[list-item]
                             tool_choice={"type": "any"}, messages=HI) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"city": "Oslo"} and final.stop_reason == "tool_use"  # type: ignore[union-attr]
    assert backend.requests[-1].tool_choice == "required"


def test_anthropic_headers_are_accepted(app: TestClient, backend: ScriptedBackend) -> None:
    resp = app.post("/v1/messages?beta=true", json={"model": "test-model", "max_tokens": 8, "messages": HI},
                    headers={"x-api-key": "k1", "anthropic-version": "2023-06-01",
                             "anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert resp.status_code == 200 and resp.json()["content"][0]["text"] == "ok"


# -- errors ----------------------------------------------------------------------------------

def anthropic_error(resp: Any, status: int, etype: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == etype and body["error"]["message"]
    return str(body["error"]["message"])


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}])
def test_bad_key_is_authentication_error(app: TestClient, backend: ScriptedBackend, headers: dict[str, str]) -> None:
    resp = app.post("/v1/messages", json={"model": "test-model", "max_tokens": 8, "messages": HI}, headers=headers)
    anthropic_error(resp, 401, "authentication_error")
    assert backend.requests == []


def test_sdk_raises_its_own_errors(app: TestClient, sdk: anthropic.Anthropic, backend: ScriptedBackend) -> None:
    bad = anthropic.Anthropic(base_url="http://testserver", api_key="wrong", http_client=app, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="test-model", max_tokens=8, messages=HI)
    with pytest.raises(anthropic.NotFoundError) as nf:
        sdk.messages.create(model="nope", max_tokens=8, messages=HI)
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad_request:
        sdk.messages.create(model="test-model", max_tokens=8, messages=HI, extra_body={"temperature": 3})
    assert "temperature" in bad_request.value.message


PLAIN_TOOL = {"name": "t", "input_schema": {"type": "object"}}


@pytest.mark.parametrize("fields", [
    {"max_tokens": None}, {"messages": [{"role": "tool", "content": "x"}]},
    # The caps every API shares (protocol/common.py): strict types, 64-bit-safe numbers, at most 128 tools.
    {"stream": "yes"}, {"max_tokens": 2**70}, {"max_tokens": "8"}, {"top_k": 2**70},
    {"stop_sequences": ["x" * 257]}, {"stop_sequences": ["s"] * 17},
    {"tools": [{**PLAIN_TOOL, "name": f"t{i}"} for i in range(129)]},
    # More text than the model's context could hold, refused before anything tokenizes it.
    {"messages": [{"role": "user", "content": "x" * (4096 * 64 + 1)}]},
    {"system": "x" * (4096 * 64 + 1)},
])
def test_validation_is_invalid_request_error(app: TestClient, fields: dict[str, Any]) -> None:
    body = {k: v for k, v in {"model": "test-model", "max_tokens": 8, "messages": HI, **fields}.items()
            if v is not None}
    anthropic_error(app.post("/v1/messages", json=body, headers={"x-api-key": "k1"}), 400, "invalid_request_error")


def test_malformed_json_is_invalid_request_error(app: TestClient) -> None:
    resp = app.post("/v1/messages", content=b"{nope", headers={"x-api-key": "k1", "content-type": "application/json"})
    anthropic_error(resp, 400, "invalid_request_error")


def test_rate_limit_keeps_retry_after(app: TestClient, backend: ScriptedBackend) -> None:
    backend.add(RateLimitError("Slow down.", headers={"retry-after": "7"}))
    resp = app.post("/v1/messages", json={"model": "test-model", "max_tokens": 8, "messages": HI},
                    headers={"x-api-key": "k1"})
    assert anthropic_error(resp, 429, "rate_limit_error") == "Slow down."
    assert resp.headers["retry-after"] == "7"


def test_failure_before_the_first_event_is_an_error_response(app: TestClient, backend: ScriptedBackend) -> None:
    backend.add(BackendFailure("engine crashed"))
    resp = app.post("/v1/messages", json={"model": "test-model", "max_tokens": 8, "messages": HI, "stream": True},
                    headers={"x-api-key": "k1"})
    anthropic_error(resp, 502, "api_error")


def test_failure_after_the_stream_began_is_an_error_event(app: TestClient, sdk: anthropic.Anthropic,
                                                         backend: ScriptedBackend) -> None:
    backend.add(TextDelta("partial"), BackendFailure("engine crashed"))
    resp = app.post("/v1/messages", json={"model": "test-model", "max_tokens": 8, "messages": HI, "stream": True},
                    headers={"x-api-key": "k1"})
    frames = split_frames(resp.content)
    assert resp.status_code == 200 and frames[-1]["event"] == "error"
    assert '"type":"api_error"' in frames[-1]["data"] and "message_stop" not in resp.text
    backend.add(TextDelta("partial"), BackendFailure("engine crashed"))
    with pytest.raises(anthropic.APIStatusError, match="engine crashed"):
        with sdk.messages.stream(model="test-model", max_tokens=8, messages=HI) as stream:
            stream.get_final_message()
    assert sdk.messages.create(model="test-model", max_tokens=8, messages=HI).content  # the slot was freed


def test_non_stream_failure_mid_generation(app: TestClient, backend: ScriptedBackend) -> None:
    backend.add(TextDelta("partial"), BackendFailure("engine crashed"))
    resp = app.post("/v1/messages", json={"model": "test-model", "max_tokens": 8, "messages": HI},
                    headers={"x-api-key": "k1"})
    anthropic_error(resp, 502, "api_error")


def test_other_paths_keep_the_openai_error_shape(app: TestClient) -> None:
    resp = app.post("/v1/chat/completions", json={"model": "nope", "messages": HI}, headers={"x-api-key": "k1"})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


# -- count_tokens ------------------------------------------------------------------------------

def test_count_tokens_estimates_without_a_tokenizer(sdk: anthropic.Anthropic, backend: ScriptedBackend) -> None:
    short = sdk.messages.count_tokens(model="test-model", messages=HI)
    long = sdk.messages.count_tokens(model="test-model", system="x" * 400, messages=HI,
                                     tools=[TOOL])  # type: ignore[list-item]
    assert 0 < short.input_tokens < long.input_tokens
    assert backend.requests == []  # counting generates nothing
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(model="nope", messages=HI)
