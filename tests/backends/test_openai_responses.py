"""An upstream's native ``/v1/responses``: the request body, and recorded vLLM / OpenAI / llama-server answers."""

from __future__ import annotations

import pytest

from shoal.core.backend import BackendFailure, ModelCard
from shoal.backends.openai_responses import OpenAIResponsesBackend, responses_body
from shoal.backends.upstream import UpstreamConfig
from shoal.core.types import (
    Finish,
    GenerationRequest,
    ImageInput,
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
from tests.backends.responses_transcripts import (
    CUT_STREAM,
    FAILED_STREAM,
    LLAMA_SERVER_TOOL_STREAM,
    OPENAI_STREAM,
    VLLM_STREAM,
    VLLM_WHOLE,
    sse,
)
from tests.upstream_fakes import FakeUpstream

CARD = ModelCard(id="m", owned_by="t", created=0, context_length=4096)
TOOL = ToolSpec("get_weather", "Weather of a city",
                {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
ASK = (Message("user", "What is the weather in Paris?"),)


def backend(url: str) -> OpenAIResponsesBackend:
    return OpenAIResponsesBackend("up", CARD, UpstreamConfig(base_url=url, model="served-name"))


async def collect(request: GenerationRequest, *script: object) -> tuple[list, FakeUpstream]:
    async with FakeUpstream(*script) as up:
        b = backend(up.url)
        try:
            return [e async for e in b.generate(request)], up
        finally:
            await b.aclose()


def calls_of(events: list) -> list[tuple[str | None, str | None, str]]:
    """(id, name, arguments) of each call, its deltas joined."""
    out: dict[int, list] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            call = out.setdefault(e.index, [None, None, ""])
            call[0] = call[0] or e.id
            call[1] = call[1] or e.name
            call[2] += e.arguments
    return [tuple(c) for _, c in sorted(out.items())]  # type: ignore[misc]


def test_body_carries_the_conversation_as_typed_items() -> None:
    request = GenerationRequest(
        model="m", tools=(TOOL,), tool_choice=NamedTool("get_weather"), parallel_tool_calls=False,
        response_format=ResponseFormat("json_schema", name="out", schema={"type": "object"}, strict=True),
        reasoning_effort="low", user="u1", stream=False,
        sampling=SamplingParams(temperature=0.2, top_p=0.9, seed=7, stop=("X",), max_tokens=9, logprobs=True,
                                top_logprobs=2),
        messages=(Message("developer", "sys"),
                  Message.of_parts("user", ("look: ", ImageInput("data:image/png;base64,AAAA", "low"))),
                  Message("assistant", "Checking.", tool_calls=(ToolCall("c1", "get_weather", "{}"),),
                          reasoning="private"),
                  Message("tool", "sunny", tool_call_id="c1")))
    body = responses_body(request, "served-name", {"service_tier": "flex"})
    assert body["model"] == "served-name" and body["stream"] is False and body["store"] is False
    assert body["input"] == [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sys"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look: "},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    assert body["tools"] == [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                              "parameters": TOOL.parameters, "strict": False}]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["parallel_tool_calls"] is False
    assert body["text"] == {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"},
                                       "strict": True}}
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"], body["max_output_tokens"]) == (
        0.2, 0.9, 7, ["X"], 9)
    assert body["reasoning"] == {"effort": "low"} and body["user"] == "u1"
    assert body["include"] == ["message.output_text.logprobs"] and body["top_logprobs"] == 2
    assert body["service_tier"] == "flex"


def test_body_leaves_out_what_the_caller_did_not_set() -> None:
    body = responses_body(GenerationRequest(model="m", messages=ASK), "served-name")
    assert set(body) == {"model", "input", "stream", "store"}


async def test_vllm_stream_reasoning_call_and_cached_tokens() -> None:
    events, up = await collect(GenerationRequest(model="m", messages=ASK, tools=(TOOL,)), VLLM_STREAM)
    assert up.paths == ["/v1/responses"] and up.bodies[0]["stream"] is True
    assert events[:2] == [ReasoningDelta("The user wants"), ReasoningDelta(" weather.")]
    assert calls_of(events) == [("call_1", "get_weather", '{"city": "Paris"}')]
    assert not [e for e in events if isinstance(e, TextDelta)]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    u = finish.usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (120, 20, 96, 6)


async def test_vllm_whole_answer_for_a_caller_that_does_not_stream() -> None:
    events, up = await collect(GenerationRequest(model="m", messages=ASK, tools=(TOOL,), stream=False), VLLM_WHOLE)
    assert up.bodies[0]["stream"] is False
    assert events[0] == ReasoningDelta("The user wants weather.")
    assert calls_of(events) == [("call_1", "get_weather", '{"city": "Paris"}')]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert (finish.usage.cached_tokens, finish.usage.reasoning_tokens) == (96, 6)


async def test_openai_summary_logprobs_and_incomplete() -> None:
    events, _ = await collect(GenerationRequest(model="m", messages=ASK, sampling=SamplingParams(logprobs=True)),
                              OPENAI_STREAM)
    assert events[0] == ReasoningDelta("Greeting.")
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(t.text for t in texts) == "Hi there"
    logprobs = [lp for t in texts for lp in t.logprobs]
    assert [(lp.token, lp.logprob) for lp in logprobs] == [("Hi", -0.25), (" there", -0.5)]
    assert logprobs[0].top == (("Hello", -1.5, (72, 101, 108, 108, 111)),)
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "length"
    assert (finish.usage.output_tokens, finish.usage.reasoning_tokens) == (4, 2)


async def test_a_call_llama_server_streams_as_text_becomes_a_call() -> None:
    """Recorded: llama-server's Responses endpoint relays Qwen's JSON call as output text."""
    events, _ = await collect(GenerationRequest(model="m", messages=ASK, tools=(TOOL,)), LLAMA_SERVER_TOOL_STREAM)
    ((call_id, name, arguments),) = calls_of(events)
    assert call_id and name == "get_weather" and arguments.replace(" ", "") == '{"city":"Paris"}'
    assert not "".join(e.text for e in events if isinstance(e, TextDelta)).strip()
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert finish.usage.input_tokens > 100 and finish.usage.output_tokens > 0


async def test_only_one_kind_of_reasoning_is_relayed() -> None:
    """A server sending raw reasoning and its summary (or vLLM's old and new events) is not doubled."""
    stream = sse(
        {"type": "response.reasoning_text.delta", "item_id": "rs", "output_index": 0, "delta": "think"},
        {"type": "response.reasoning.delta", "item_id": "rs", "output_index": 0, "delta": {"content": "think"}},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs", "output_index": 0, "delta": "sum"},
        {"type": "response.output_text.delta", "item_id": "m", "output_index": 1, "delta": "ok"},
        {"type": "response.completed", "response": {"status": "completed"}})
    events, _ = await collect(GenerationRequest(model="m", messages=ASK), stream)
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [ReasoningDelta("think")]
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"


async def test_arguments_sent_whole_at_item_done() -> None:
    call = {"type": "function_call", "id": "fc_7", "call_id": "call_7", "name": "get_weather", "arguments": ""}
    stream = sse(
        {"type": "response.output_item.added", "output_index": 0, "item": call},
        {"type": "response.output_item.done", "output_index": 0, "item": {**call, "arguments": '{"city":"Oslo"}'}},
        {"type": "response.completed", "response": {"status": "completed"}})
    events, _ = await collect(GenerationRequest(model="m", messages=ASK, tools=(TOOL,)), stream)
    assert calls_of(events) == [("call_7", "get_weather", '{"city":"Oslo"}')]


async def test_a_failed_response_is_a_failure_not_an_answer() -> None:
    with pytest.raises(BackendFailure) as info:
        await collect(GenerationRequest(model="m", messages=ASK), FAILED_STREAM)
    assert "engine died" in info.value.message and not info.value.client_error


async def test_a_whole_failed_response_is_a_failure() -> None:
    failed = {"id": "resp_1", "object": "response", "status": "failed", "output": [],
              "error": {"code": "server_error", "message": "out of memory"}}
    with pytest.raises(BackendFailure) as info:
        await collect(GenerationRequest(model="m", messages=ASK, stream=False), failed)
    assert "out of memory" in info.value.message


async def test_a_stream_cut_before_the_response_completed_is_dropped() -> None:
    with pytest.raises(BackendFailure) as info:
        await collect(GenerationRequest(model="m", messages=ASK), CUT_STREAM)
    assert info.value.retryable and info.value.code == "upstream_dropped"


@pytest.mark.parametrize("fault, status", [("500", 500), ("429", 429), ("400", 400)])
async def test_http_errors_map_like_the_chat_path(fault: str, status: int) -> None:
    with pytest.raises(BackendFailure) as info:
        await collect(GenerationRequest(model="m", messages=ASK), fault)
    assert info.value.status == status and info.value.client_error == (status == 400)
