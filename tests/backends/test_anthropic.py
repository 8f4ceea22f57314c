"""The Anthropic Messages backend: request translation, and a recorded SSE transcript replayed on loopback."""

from __future__ import annotations

import json

from shoal.backends.anthropic import AnthropicBackend, MessagesTranslator, messages_body
from shoal.core.backend import ModelCard
from shoal.backends.upstream import UpstreamConfig
from shoal.core.types import (
    Finish,
    GenerationRequest,
    Message,
    NamedTool,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from tests.upstream_fakes import FakeUpstream

CARD = ModelCard(id="claude", owned_by="anthropic", created=0, context_length=200000)


def sse(*events: dict) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


# Shape of a real stream with extended thinking and a tool call (Messages API docs, streaming section).
TRANSCRIPT = sse(
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                          "model": "claude-x", "stop_reason": None,
                                          "usage": {"input_tokens": 12, "cache_read_input_tokens": 2000,
                                                    "cache_creation_input_tokens": 30, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Need weather."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "ping"},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2,
     "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": " \"Paris\"}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 40}},
    {"type": "message_stop"},
)

TOOL = ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})


def test_request_translation() -> None:
    request = GenerationRequest(
        model="claude", sampling=SamplingParams(temperature=1.5, stop=("END",)), tools=(TOOL,),
        tool_choice=NamedTool("get_weather"), parallel_tool_calls=False, messages=(
            Message("system", "Be brief."),
            Message("user", "Weather?"),
            Message("assistant", "", tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),)),
            Message("tool", '{"temp": 20}', tool_call_id="toolu_1"),
            Message("tool", '{"temp": 21}', tool_call_id="toolu_2"),
        ))
    body = messages_body(request, "claude-x", max_tokens=512)
    assert body["max_tokens"] == 512 and body["temperature"] == 1.0 and body["stop_sequences"] == ["END"]
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
    results = body["messages"][2]["content"]
    assert [r["tool_use_id"] for r in results] == ["toolu_1", "toolu_2"]
    assert results[-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}


def test_reasoning_effort_becomes_a_thinking_budget() -> None:
    request = GenerationRequest(model="c", messages=(Message("user", "hi"),), reasoning_effort="low",
                                sampling=SamplingParams(max_tokens=4000, temperature=0.2))
    body = messages_body(request, "c", max_tokens=100, cache_prompt=False)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024} and "temperature" not in body
    assert "cache_control" not in body["messages"][0]["content"][0]


async def test_recorded_stream_replayed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    async with FakeUpstream(TRANSCRIPT) as upstream:
        backend = AnthropicBackend("a", CARD, UpstreamConfig(base_url=upstream.url.removesuffix("/v1"),
                                                             model="claude-x", api_key_env="TEST_ANTHROPIC_KEY"))
        try:
            request = GenerationRequest(model="claude", messages=(Message("user", "Weather in Paris?"),),
                                        tools=(TOOL,))
            events = [e async for e in backend.generate(request)]
        finally:
            await backend.aclose()
    assert upstream.paths == ["/v1/messages"]
    assert upstream.headers[0]["x-api-key"] == "sk-ant-test"
    assert upstream.headers[0]["anthropic-version"] == "2023-06-01"
    assert upstream.bodies[0]["max_tokens"] == 4096
    assert events[:2] == [ReasoningDelta("Need weather."), TextDelta("Checking.")]
    assert events[2] == ToolCallDelta(index=0, id="toolu_1", name="get_weather")
    assert "".join(e.arguments for e in events if isinstance(e, ToolCallDelta)) == '{"city": "Paris"}'
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert (finish.usage.input_tokens, finish.usage.cached_tokens, finish.usage.output_tokens) == (2042, 2000, 40)


async def test_overloaded_529_is_retryable() -> None:
    from shoal.core.backend import BackendFailure

    class Overloaded(FakeUpstream):
        async def _handle(self, request):  # type: ignore[no-untyped-def]
            from aiohttp import web

            return web.json_response({"type": "error", "error": {"type": "overloaded_error",
                                                                 "message": "Overloaded"}}, status=529)

    async with Overloaded() as upstream:
        backend = AnthropicBackend("a", CARD, UpstreamConfig(base_url=upstream.url, model="m"))
        try:
            events = backend.generate(GenerationRequest(model="claude", messages=(Message("user", "hi"),)))
            try:
                await events.__anext__()
            except BackendFailure as exc:
                assert exc.retryable and exc.status == 529 and "Overloaded" in exc.message
            else:
                raise AssertionError("no failure")
        finally:
            await backend.aclose()


def test_images_become_image_blocks() -> None:
    from shoal.core.types import ImageInput

    request = GenerationRequest(model="claude", messages=(
        Message("system", "Describe."),
        Message.of_parts("user", (ImageInput("data:image/jpg;base64,/9j/4AAQ", "low"), "and",
                                  ImageInput("https://x.test/cat.png"), "?")),
    ))
    body = messages_body(request, "claude-x", max_tokens=100)
    assert body["system"][0]["text"] == "Describe."
    blocks = body["messages"][0]["content"]
    assert blocks[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                     "data": "/9j/4AAQ"}}
    assert blocks[1] == {"type": "text", "text": "and"}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}
    assert blocks[3] == {"type": "text", "text": "?", "cache_control": {"type": "ephemeral"}}


async def test_an_image_reaches_the_messages_api() -> None:
    from shoal.core.types import ImageInput

    async with FakeUpstream(TRANSCRIPT) as upstream:
        backend = AnthropicBackend("a", CARD, UpstreamConfig(base_url=upstream.url, model="claude-x"),
                                   cache_prompt=False)
        try:
            request = GenerationRequest(model="claude", messages=(Message.of_parts(
                "user", ("What is this?", ImageInput("data:image/png;base64,iVBORw0KGgo="))),))
            [e async for e in backend.generate(request)]
        finally:
            await backend.aclose()
    assert upstream.bodies[0]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]


def test_the_matched_stop_sequence_is_kept() -> None:
    translator = MessagesTranslator()
    translator.feed({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                     "usage": {"output_tokens": 3}})
    finish = translator.finish()
    assert (finish.reason, finish.stop_sequence) == ("stop", "END")
