"""The OpenAI-compatible backend: request body, and recorded vLLM / OpenAI streams replayed on loopback."""

from __future__ import annotations

import pytest

from shoal.core.backend import BackendFailure, ModelCard
from shoal.backends.openai_compat import OpenAICompatBackend, chat_body
from shoal.backends.upstream import UpstreamConfig
from shoal.core.types import (
    Finish,
    GenerationRequest,
    Message,
    NamedTool,
    ReasoningDelta,
    ResponseFormat,
    SamplingParams,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from tests.upstream_fakes import FakeUpstream, chunk

CARD = ModelCard(id="m", owned_by="t", created=0, context_length=4096)
TOOL = ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})

# vLLM with a reasoning parser (``reasoning`` field, ≥0.9) and a tool parser; usage with cached tokens.
VLLM = (chunk({"role": "assistant", "content": None})
        + chunk({"reasoning": "The user wants"}) + chunk({"reasoning": " weather."})
        + chunk({"tool_calls": [{"index": 0, "id": "chatcmpl-tool-1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ""}}]})
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Paris\"}"}}]})
        + chunk({}, "tool_calls")
        + chunk({}, usage={"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140,
                           "prompt_tokens_details": {"cached_tokens": 96},
                           "completion_tokens_details": {"reasoning_tokens": 6}})
        + b"data: [DONE]\n\n")

# OpenAI / DeepSeek-style ``reasoning_content`` with logprobs.
LOGPROBS = (chunk({"role": "assistant", "reasoning_content": "hm"})
            + b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null,"logprobs":'
              b'{"content":[{"token":"Hi","logprob":-0.1,"bytes":[72,105],"top_logprobs":[]}]}}]}\n\n'
            + chunk({}, "stop") + chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 2})
            + b"data: [DONE]\n\n")


def backend(url: str, key_env: str | None = None) -> OpenAICompatBackend:
    return OpenAICompatBackend("up", CARD, UpstreamConfig(base_url=url, model="served-name", api_key_env=key_env))


async def collect(b: OpenAICompatBackend, request: GenerationRequest) -> list:
    try:
        return [e async for e in b.generate(request)]
    finally:
        await b.aclose()


def test_chat_body_carries_everything() -> None:
    request = GenerationRequest(
        model="m", tools=(TOOL,), tool_choice=NamedTool("get_weather"), parallel_tool_calls=False,
        response_format=ResponseFormat("json_schema", name="out", schema={"type": "object"}, strict=True),
        reasoning_effort="low", user="u1",
        sampling=SamplingParams(temperature=0.2, top_p=0.9, seed=7, stop=("X",), max_tokens=9, logprobs=True,
                                top_logprobs=2),
        messages=(Message("developer", "sys"), Message("user", "q"),
                  Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{}"),), reasoning="r"),
                  Message("tool", "sunny", tool_call_id="c1")))
    body = chat_body(request, "served-name")
    assert body["model"] == "served-name" and body["stream"] and body["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["messages"][2]["reasoning_content"] == "r" and body["messages"][2]["content"] is None
    assert body["messages"][3]["tool_call_id"] == "c1"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"], body["max_tokens"]) == (
        0.2, 0.9, 7, ["X"], 9)
    assert body["logprobs"] and body["top_logprobs"] == 2 and body["reasoning_effort"] == "low"


async def test_vllm_reasoning_field_tool_calls_and_cached_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UP_KEY", "sk-secret")
    async with FakeUpstream(VLLM) as up:
        events = await collect(backend(up.url, "TEST_UP_KEY"), GenerationRequest(
            model="m", messages=(Message("user", "weather?"),), tools=(TOOL,)))
    assert up.paths == ["/v1/chat/completions"] and up.headers[0]["Authorization"] == "Bearer sk-secret"
    assert events[:2] == [ReasoningDelta("The user wants"), ReasoningDelta(" weather.")]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].id == "chatcmpl-tool-1" and calls[0].name == "get_weather"
    assert "".join(c.arguments for c in calls) == '{"city": "Paris"}'
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert (finish.usage.input_tokens, finish.usage.cached_tokens, finish.usage.reasoning_tokens) == (120, 96, 6)


async def test_reasoning_content_and_logprobs() -> None:
    async with FakeUpstream(LOGPROBS) as up:
        events = await collect(backend(up.url), GenerationRequest(
            model="m", messages=(Message("user", "hi"),), sampling=SamplingParams(logprobs=True)))
    assert events[0] == ReasoningDelta("hm")
    text = next(e for e in events if isinstance(e, TextDelta))
    assert text.text == "Hi" and text.logprobs[0].logprob == -0.1


@pytest.mark.parametrize("fault, retryable, client", [("500", True, False), ("429", True, False),
                                                      ("400", False, True)])
async def test_http_errors_map_to_failures(fault: str, retryable: bool, client: bool) -> None:
    async with FakeUpstream(fault) as up:
        with pytest.raises(BackendFailure) as info:
            await collect(backend(up.url), GenerationRequest(model="m", messages=(Message("user", "x"),)))
    failure = info.value
    assert (failure.status, failure.retryable, failure.client_error) == (int(fault), retryable, client)
    if fault == "429":
        assert failure.retry_after == 1.0
    if fault == "400":
        assert failure.message == "bad temperature"


async def test_key_never_in_repr_or_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UP_KEY", "sk-secret")
    b = backend("http://127.0.0.1:9/v1", "TEST_UP_KEY")
    assert "sk-secret" not in repr(b) and "sk-secret" not in repr(b.config)
    with pytest.raises(BackendFailure) as info:
        await collect(b, GenerationRequest(model="m", messages=(Message("user", "x"),)))
    assert "sk-secret" not in info.value.message and info.value.retryable


def test_images_go_upstream_as_image_url_parts_in_order() -> None:
    from shoal.core.types import ImageInput

    png = "data:image/png;base64,iVBORw0KGgo="
    request = GenerationRequest(model="m", messages=(
        Message("system", "sys"),
        Message.of_parts("user", ("Compare ", ImageInput(png, "low"), " with ", ImageInput("https://x.test/b.jpg"))),
    ))
    messages = chat_body(request, "served-name")["messages"]
    assert messages[0] == {"role": "system", "content": "sys"}  # text-only messages stay plain strings
    assert messages[1] == {"role": "user", "content": [
        {"type": "text", "text": "Compare "},
        {"type": "image_url", "image_url": {"url": png, "detail": "low"}},
        {"type": "text", "text": " with "},
        {"type": "image_url", "image_url": {"url": "https://x.test/b.jpg"}},  # auto: the default, left out
    ]}


async def test_an_image_reaches_the_upstream_body() -> None:
    from shoal.core.types import ImageInput

    async with FakeUpstream(LOGPROBS) as up:
        await collect(backend(up.url), GenerationRequest(model="m", messages=(
            Message.of_parts("user", (ImageInput("https://x.test/a.png", "high"), "What is it?")),)))
    assert up.bodies[0]["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
        {"type": "text", "text": "What is it?"}]


WHOLE = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "served-name",
    "choices": [{"index": 0, "finish_reason": "tool_calls",
                 "message": {"role": "assistant", "content": None, "reasoning_content": "Paris is a city; weather.",
                             "tool_calls": [{"id": "call_1", "type": "function",
                                             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
    "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
              "prompt_tokens_details": {"cached_tokens": 32}},
}


async def test_a_caller_that_does_not_stream_gets_the_upstreams_whole_answer() -> None:
    async with FakeUpstream(WHOLE) as up:
        events = await collect(backend(up.url), GenerationRequest(
            model="m", messages=(Message("user", "weather?"),), tools=(TOOL,), stream=False))
    body = up.bodies[0]
    assert body["stream"] is False and "stream_options" not in body
    assert events[0] == ReasoningDelta("Paris is a city; weather.")
    (call,) = [e for e in events if isinstance(e, ToolCallDelta)]
    assert (call.id, call.name, call.arguments) == ("call_1", "get_weather", '{"city":"Paris"}')
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert (finish.usage.input_tokens, finish.usage.output_tokens, finish.usage.cached_tokens) == (50, 20, 32)
    # Not counted by the upstream: the reasoning's share of the output text (25 of 41 characters).
    assert finish.usage.reasoning_tokens == 12


async def test_an_upstream_that_streams_anyway_is_read_as_a_stream() -> None:
    async with FakeUpstream(LOGPROBS) as up:
        events = await collect(backend(up.url), GenerationRequest(
            model="m", messages=(Message("user", "hi"),), stream=False))
    assert up.bodies[0]["stream"] is False
    assert [e for e in events if isinstance(e, TextDelta)][0].text == "Hi"
    assert isinstance(events[-1], Finish) and events[-1].usage.output_tokens == 2


async def test_events_split_across_reads_at_any_byte_are_framed_alike() -> None:
    """Frames cut mid-line, mid-UTF-8 character and between the two newlines still parse the same."""
    raw = '{"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}'
    stream = (f"data: {raw % 'Grüße, '}\n\ndata: {raw % 'naïve café'}\n\n".encode()
              + chunk({}, "stop") + chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 4})
              + b"data: [DONE]\n\n")
    cut = [7, stream.index("ü".encode()) + 1, stream.index(b"\n\n", 40) + 1, len(stream) - 3]
    pieces = [stream[a:b] for a, b in zip([0, *cut], [*cut, len(stream)])]
    async with FakeUpstream(pieces) as up:
        events = await collect(backend(up.url), GenerationRequest(model="m", messages=(Message("user", "hi"),)))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Grüße, naïve café"
    assert isinstance(events[-1], Finish) and events[-1].usage.output_tokens == 4


async def test_a_whole_answer_that_is_not_json_is_a_dropped_answer() -> None:
    async with FakeUpstream(("raw-json", b'{"choices": [')) as up:
        with pytest.raises(BackendFailure) as info:
            await collect(backend(up.url), GenerationRequest(model="m", messages=(Message("user", "x"),),
                                                             stream=False))
    assert info.value.retryable and info.value.code == "upstream_dropped"
