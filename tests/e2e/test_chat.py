"""POST /v1/chat/completions against a real server, with the openai client and raw httpx."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import MODEL_ID

pytestmark = pytest.mark.e2e

# SmolLM2-135M follows this one reliably at temperature 0: "1, 2, 3, 4, 5, 6, 7, 8" then EOS.
COUNT_PROMPT = "Write the numbers 1, 2, 3, 4, 5, 6, 7, 8 separated by commas."
COUNT_ANSWER = "1, 2, 3, 4, 5, 6, 7, 8"


def check_usage(usage) -> None:
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("messages", [
    pytest.param([{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "Say hello."}], id="system+user"),
    pytest.param([{"role": "developer", "content": "You are a helpful assistant."},
                  {"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello."}]}],
                 id="developer+text-parts"),
])
def test_non_streaming(client: openai.OpenAI, messages) -> None:
    r = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=16)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == MODEL_ID
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    check_usage(r.usage)
    assert r.usage.completion_tokens <= 16
    if choice.finish_reason == "length":
        assert r.usage.completion_tokens == 16


def test_known_answer_at_temperature_zero(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": COUNT_PROMPT}],
                                       max_tokens=40, temperature=0, seed=1)
    assert r.choices[0].message.content.strip() == COUNT_ANSWER
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 40


def test_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": COUNT_PROMPT}],
                                            max_tokens=40, temperature=0, seed=1, stream=True)
    chunks = list(stream)
    assert len(chunks) >= 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == COUNT_ANSWER
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    # Without include_usage there is no usage chunk.
    assert all(c.usage is None for c in chunks)


def test_streaming_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Say hello."}],
                                            max_tokens=12, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    check_usage(last.usage)
    assert all(c.usage is None for c in chunks[:-1])
    assert len(chunks[:-1]) >= 2
    finishes = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in {"stop", "length"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text
    if finishes[0] == "length":
        assert last.usage.completion_tokens == 12


def test_streaming_raw_sse_framing(http: httpx.Client) -> None:
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 12,
            "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", "/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes())
    text = raw.decode("utf-8")
    assert "\r" not in text
    assert text.endswith("data: [DONE]\n\n")
    lines = text.split("\n")
    # Every line (including the last) is terminated by "\n", so split leaves a trailing "".
    assert lines[-1] == ""
    data_lines = [ln for ln in lines if ln]
    assert all(ln.startswith(("data: ", ":")) for ln in data_lines), data_lines
    payloads = [ln[len("data: "):] for ln in data_lines if ln.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    assert payloads.count("[DONE]") == 1
    # Frames are separated by blank lines: "data: {...}\n\n".
    frames = [f for f in text.split("\n\n") if f]
    assert len(frames) == len(payloads)
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    for c in chunks[:-1]:
        assert "usage" in c and c["usage"] is None
        assert len(c["choices"]) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def test_temperature_zero_with_seed_is_deterministic(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Tell me a fact about the sea."}],
              "max_tokens": 24, "temperature": 0, "seed": 42}
    a = client.chat.completions.create(**kwargs)
    b = client.chat.completions.create(**kwargs)
    assert a.choices[0].message.content
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.completion_tokens == b.usage.completion_tokens


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_gives_length(client: openai.OpenAI, limit: str) -> None:
    r = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0, **{limit: 5})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert r.choices[0].message.content


def test_max_completion_tokens_wins_over_max_tokens(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0, max_tokens=30, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3


def test_streaming_token_limit(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0, max_tokens=5, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason] == ["length"]


def test_stop_sequence(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL_ID, "messages": [{"role": "user", "content": COUNT_PROMPT}],
              "max_tokens": 40, "temperature": 0, "seed": 1}
    free = client.chat.completions.create(**kwargs)
    assert "4" in free.choices[0].message.content  # the stop string would otherwise appear
    r = client.chat.completions.create(**kwargs, stop=["4"])
    text = r.choices[0].message.content
    assert "4" not in text
    assert text.startswith("1, 2, 3")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < free.usage.completion_tokens


def test_stop_sequence_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": COUNT_PROMPT}],
                                            max_tokens=40, temperature=0, seed=1, stop="5", stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("1, 2, 3, 4")
    assert "5" not in text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Say hello."}],
                                       max_tokens=8, logprobs=True, top_logprobs=2, temperature=0)
    content = r.choices[0].message.content
    lps = r.choices[0].logprobs.content
    assert lps, "no logprobs"
    assert len(lps) == r.usage.completion_tokens
    assert "".join(t.token for t in lps) == content
    for t in lps:
        assert t.logprob <= 0.0
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
        assert 1 <= len(t.top_logprobs) <= 2
        for top in t.top_logprobs:
            assert top.bytes is not None and bytes(top.bytes).decode("utf-8", "replace") == top.token
            assert top.logprob <= 0.0
        # Greedy decoding picks the most likely token.
        assert t.logprob == pytest.approx(max(top.logprob for top in t.top_logprobs), abs=1e-4)


def test_logprobs_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Say hello."}],
                                            max_tokens=8, logprobs=True, top_logprobs=1, temperature=0, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content or ()]
    assert text and "".join(t.token for t in tokens) == text
    assert all(len(t.top_logprobs) == 1 for t in tokens)


def test_no_logprobs_unless_asked(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Say hello."}],
                                       max_tokens=4)
    assert r.choices[0].logprobs is None


def test_response_header_names_the_model(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json={"model": MODEL_ID, "max_tokens": 2,
                                             "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    assert r.headers["x-shoal-model"] == MODEL_ID
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["usage"]["completion_tokens"] == 2
