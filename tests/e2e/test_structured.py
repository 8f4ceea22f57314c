"""Structured outputs, logprobs and reasoning effort end to end on the DEFAULT model (Qwen2.5-Coder-0.5B)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from tests.e2e.test_tools import GREEDY, MODEL, DefaultModelServer, default_model_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                   "landmarks": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
    "required": ["city", "country", "landmarks"],
    "additionalProperties": False,
}
PROMPT = "Describe Paris as JSON."


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    srv = DefaultModelServer(default_model_path(), tmp_path_factory.mktemp("qwen-structured"))
    srv.start()
    c = srv.client(timeout=120)
    try:
        yield c
    finally:
        c.close()
        srv.stop()


def test_chat_json_schema_strict_parses_and_validates(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=80, **GREEDY,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": CITY}})
    assert result.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(result.choices[0].message.content or ""), CITY)


def test_responses_text_format_json_schema_parses_validates_and_is_echoed(client: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}
    with client.responses.stream(model=MODEL, input=PROMPT, text={"format": fmt}, max_output_tokens=80,
                                 **GREEDY) as stream:
        for _ in stream:
            pass
        streamed = stream.get_final_response()
    whole = client.responses.create(model=MODEL, input=PROMPT, text={"format": fmt}, max_output_tokens=80, **GREEDY)
    assert whole.status == "completed" and whole.output_text == streamed.output_text
    jsonschema.validate(json.loads(whole.output_text), CITY)
    assert whole.text.format.type == "json_schema" and whole.text.format.name == "city"


def test_chat_json_object_parses(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Give the name and country of Paris as a JSON object."}],
        response_format={"type": "json_object"}, max_tokens=60, **GREEDY)
    assert result.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(result.choices[0].message.content or ""), dict)


def test_invalid_schema_is_a_400_naming_the_problem(client: openai.OpenAI) -> None:
    bad = {"type": "object", "properties": {"n": {"type": "integr"}}}
    with pytest.raises(openai.BadRequestError) as chat_err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "n", "schema": bad}})
    with pytest.raises(openai.BadRequestError) as resp_err:
        client.responses.create(model=MODEL, input="x",
                                text={"format": {"type": "json_schema", "name": "n", "schema": bad}})
    for err in (chat_err.value, resp_err.value):
        assert "Invalid schema for response_format 'n'" in err.message and "properties.n.type" in err.message


def test_chat_logprobs_join_to_the_text_with_bytes(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello in French."}],
                                            logprobs=True, top_logprobs=20, max_tokens=12, **GREEDY)
    text = result.choices[0].message.content or ""
    tokens = result.choices[0].logprobs.content or []
    assert "".join(t.token for t in tokens) == text
    assert bytes(b for t in tokens for b in t.bytes or ()).decode() == text
    assert all(len(t.top_logprobs) == 20 for t in tokens)


def test_responses_logprobs_join_to_the_text(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Say hello in Japanese.", max_output_tokens=12,
                                       include=["message.output_text.logprobs"], top_logprobs=2, **GREEDY)
    part = response.output[0].content[0]
    assert "".join(t.token for t in part.logprobs) == part.text
    assert bytes(b for t in part.logprobs for b in t.bytes).decode() == part.text
    assert all(len(t.top_logprobs) == 2 for t in part.logprobs)


def test_more_than_20_top_logprobs_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], logprobs=True,
                                       top_logprobs=21)
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.responses.create(model=MODEL, input="x", include=["message.output_text.logprobs"], top_logprobs=21)


def test_reasoning_effort_is_accepted(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi."}],
                                          reasoning_effort="low", max_tokens=8, **GREEDY)
    assert chat.choices[0].message.content
    response = client.responses.create(model=MODEL, input="Say hi.", reasoning={"effort": "low"},
                                       max_output_tokens=8, **GREEDY)
    assert response.output_text and response.reasoning.effort == "low"
