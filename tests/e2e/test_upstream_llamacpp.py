"""Shoal in front of a real upstream nobody here wrote: llama.cpp's own HTTP server.

xllamacpp starts llama-server in this test process on a loopback port, serving
the small test model; a ``shoal serve`` subprocess gets it as an
OpenAI-compatible catalog deployment (key from an environment variable) and the
official ``openai`` client talks to Shoal: both APIs, streamed and not, tools,
and cached tokens on a repeated prompt. The ``-native`` models reach the same
servers through their own ``/v1/responses`` (``api: responses``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

UPSTREAM_ID = "smol-up"
KEY_ENV = "SHOAL_TEST_UPSTREAM_KEY"


@pytest.fixture(scope="module")
def llama_server(test_model_path: Path) -> Iterator[tuple[str, str]]:
    """llama.cpp's server on the test model: (base URL with /v1, its API key)."""
    from shoal.backends.local.engine import LocalBackend, LocalModelConfig

    backend = LocalBackend(LocalModelConfig(model_id="smollm2-upstream", path=test_model_path, parallel=2,
                                            ctx_per_slot=2048, threads=1))
    backend.load()
    try:
        yield backend.listening_address + "/v1", backend.http_api_key
    finally:
        backend._executor.shutdown(wait=False)
        backend._server = None


@pytest.fixture(scope="module")
def qwen_server() -> Iterator[tuple[str, str]]:
    """llama.cpp's server on the default 0.5B model (it writes tool calls; SmolLM2's template has no tools)."""
    from shoal.backends.local.engine import LocalBackend, LocalModelConfig
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    path, _ = resolve_model_path("qwen2.5-coder-0.5b-instruct", default_cache_dir())
    backend = LocalBackend(LocalModelConfig(model_id="qwen-upstream", path=path, parallel=1, ctx_per_slot=1024,
                                            threads=2))
    backend.load()
    try:
        yield backend.listening_address + "/v1", backend.http_api_key
    finally:
        backend._executor.shutdown(wait=False)
        backend._server = None


@pytest.fixture(scope="module")
def shoal(llama_server: tuple[str, str], qwen_server: tuple[str, str], module_server_factory: ServerFactory,
          tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    base_url, key = llama_server
    qwen_url, qwen_key = qwen_server
    config = tmp_path_factory.mktemp("catalog") / "shoal.yaml"
    config.write_text(f"""
models:
  - id: {UPSTREAM_ID}
    aliases: [smol-remote]
    description: SmolLM2 behind llama.cpp's own server
    context_length: 2048
    capabilities: {{tools: true, json_schema: true}}
    pricing: {{input: 0.5, cached_input: 0.05, output: 1.5}}
    deployments:
      - type: openai
        name: llama-server-1
        base_url: {base_url}
        api_key_env: {KEY_ENV}
        model: smollm2-upstream
        timeouts: {{connect: 2, first_byte: 30, read: 30}}
  - id: qwen-up
    capabilities: [tools]
    deployments:
      - type: openai
        base_url: {qwen_url}
        api_key_env: {KEY_ENV}_QWEN
        model: qwen-upstream
  - id: smol-native
    context_length: 2048
    deployments:
      - type: openai
        api: responses
        name: llama-server-responses
        base_url: {base_url}
        api_key_env: {KEY_ENV}
        model: smollm2-upstream
  - id: qwen-native
    capabilities: [tools]
    deployments:
      - type: openai
        api: responses
        base_url: {qwen_url}
        api_key_env: {KEY_ENV}_QWEN
        model: qwen-upstream
""")
    return module_server_factory("--config", str(config), "--parallel", "1",
                                 env={KEY_ENV: key, f"{KEY_ENV}_QWEN": qwen_key})


def test_models_lists_catalog_with_prices(shoal: ServerProcess) -> None:
    with shoal.http() as http:
        data = http.get("/models").json()["data"]
    card = next(m for m in data if m["id"] == UPSTREAM_ID)
    assert card["pricing"] == {"input": 0.5, "cached_input": 0.05, "output": 1.5}
    assert {"tools", "json_schema"} <= set(card["capabilities"])
    assert card["aliases"] == ["smol-remote"] and card["context_length"] == 2048


def test_chat_non_streamed_says_what_served_it(shoal: ServerProcess) -> None:
    with shoal.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="smol-remote", messages=[{"role": "user", "content": "Say hello."}], max_tokens=5, seed=1,
            temperature=0)
    completion = raw.parse()
    assert raw.headers["x-shoal-deployment"] == "llama-server-1"
    assert completion.model == UPSTREAM_ID
    assert completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 0 and 0 < completion.usage.completion_tokens <= 5


def test_chat_streamed_with_usage(shoal: ServerProcess) -> None:
    with shoal.client() as client:
        chunks = list(client.chat.completions.create(
            model=UPSTREAM_ID, messages=[{"role": "user", "content": "Count to three."}], max_tokens=6,
            stream=True, stream_options={"include_usage": True}, temperature=0))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (
        ["length"], ["stop"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 6


def test_responses_non_streamed_and_streamed(shoal: ServerProcess) -> None:
    with shoal.client() as client:
        resp = client.responses.create(model=UPSTREAM_ID, input="Say hi.", max_output_tokens=5)
        assert resp.status in ("completed", "incomplete")
        assert resp.output_text
        with client.responses.stream(model=UPSTREAM_ID, input="Say hi.", max_output_tokens=5) as stream:
            events = list(stream)
    types = [e.type for e in events]
    assert types[0] == "response.created" and "response.output_text.delta" in types
    assert types[-1] in ("response.completed", "response.incomplete")
    final = events[-1].response
    assert final.output_text and final.usage.output_tokens <= 5


def test_tool_call_through_upstream(shoal: ServerProcess) -> None:
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    with shoal.client() as client:
        completion = client.chat.completions.create(
            model="qwen-up", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[tool], max_tokens=30, temperature=0)
    calls = completion.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments), dict)
    assert completion.choices[0].finish_reason == "tool_calls"
    # The tool result goes back up as a tool message and the model answers from it.
    with shoal.client() as client:
        answer = client.chat.completions.create(model="qwen-up", tools=[tool], max_tokens=12, temperature=0, messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp_c": 21, "sky": "sunny"}'}])
    assert answer.choices[0].message.content or answer.choices[0].message.tool_calls


def test_cached_tokens_on_repeated_prompt(shoal: ServerProcess) -> None:
    prompt = "Here is a list of facts about rivers. " * 40 + "Which river is longest?"
    with shoal.client() as client:
        usages = [client.chat.completions.create(
            model=UPSTREAM_ID, messages=[{"role": "user", "content": prompt}], max_tokens=2, temperature=0).usage
            for _ in range(2)]
    assert usages[0].prompt_tokens > 200
    assert usages[1].prompt_tokens_details.cached_tokens > 200


def test_native_responses_upstream_both_apis(shoal: ServerProcess) -> None:
    with shoal.client() as client:
        raw = client.responses.with_raw_response.create(model="smol-native", input="Say hi.", max_output_tokens=5,
                                                        temperature=0)
        resp = raw.parse()
        with client.responses.stream(model="smol-native", input="Say hi.", max_output_tokens=5,
                                     temperature=0) as stream:
            events = list(stream)
        chat = client.chat.completions.create(model="smol-native", messages=[{"role": "user", "content": "Say hi."}],
                                              max_tokens=5, temperature=0)
    assert raw.headers["x-shoal-deployment"] == "llama-server-responses"
    assert resp.model == "smol-native" and resp.output_text and resp.status in ("completed", "incomplete")
    assert 0 < resp.usage.output_tokens <= 5 and resp.usage.input_tokens > 0
    types = [e.type for e in events]
    assert types[0] == "response.created" and "response.output_text.delta" in types
    final = events[-1].response
    assert final.output_text == resp.output_text  # temperature 0: the same answer streamed or not
    assert chat.choices[0].message.content == resp.output_text


def test_native_responses_upstream_tool_call_round_trip(shoal: ServerProcess) -> None:
    tool = {"type": "function", "name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    with shoal.client() as client:
        first = client.responses.create(model="qwen-native", input=ask, tools=[tool], max_output_tokens=40,
                                        temperature=0)
        calls = [item for item in first.output if item.type == "function_call"]
        assert calls and calls[0].name == "get_weather"
        assert isinstance(json.loads(calls[0].arguments), dict)
        second = client.responses.create(model="qwen-native", tools=[tool], max_output_tokens=20, temperature=0,
                                         input=[*ask, calls[0].model_dump(exclude_none=True),
                                                {"type": "function_call_output", "call_id": calls[0].call_id,
                                                 "output": '{"temp_c": 21, "sky": "sunny"}'}])
    assert second.status in ("completed", "incomplete") and second.output
