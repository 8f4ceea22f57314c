"""POST /v1/responses against a real server, with the openai client and raw httpx."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import MODEL_ID

pytestmark = pytest.mark.e2e

COUNT_PROMPT = "Write the numbers 1, 2, 3, 4, 5, 6, 7, 8 separated by commas."
COUNT_ANSWER = "1, 2, 3, 4, 5, 6, 7, 8"

STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def collapse(types: list[str]) -> list[str]:
    """Event types with runs of the same type collapsed into one."""
    out: list[str] = []
    for t in types:
        if not out or out[-1] != t:
            out.append(t)
    return out


def test_create_response(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL_ID, input=COUNT_PROMPT, max_output_tokens=40, temperature=0)
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.model == MODEL_ID
    assert r.status == "completed"
    assert r.incomplete_details is None
    assert r.error is None
    assert r.output[-1].type == "message"
    assert r.output[-1].role == "assistant"
    assert r.output[-1].status == "completed"
    assert r.output_text.strip() == COUNT_ANSWER
    assert r.max_output_tokens == 40
    u = r.usage
    assert u.input_tokens > 0 and u.output_tokens > 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert isinstance(u.input_tokens_details.cached_tokens, int)
    assert u.output_tokens_details.reasoning_tokens == 0
    assert (u.output_tokens_details.model_extra or {}).get("tool_output_tokens") == 0


def test_create_response_short_limit_any_prompt(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL_ID, input="Say hello.", max_output_tokens=16)
    assert r.status in {"completed", "incomplete"}
    assert r.output[-1].type == "message"
    assert r.output_text
    assert 0 < r.usage.output_tokens <= 16
    if r.status == "incomplete":
        assert r.usage.output_tokens == 16


def test_raw_response_has_digitalocean_extras(http: httpx.Client) -> None:
    r = http.post("/responses", json={"model": MODEL_ID, "input": COUNT_PROMPT, "max_output_tokens": 40,
                                      "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["created"], int)
    assert body["created"] == body["created_at"]
    text = "".join(p["text"] for item in body["output"] if item["type"] == "message" for p in item["content"])
    assert text.strip() == COUNT_ANSWER
    assert isinstance(body["choices"], list) and len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == text
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert set(usage["input_tokens_details"]) >= {"cached_tokens"}
    assert set(usage["output_tokens_details"]) >= {"reasoning_tokens", "tool_output_tokens"}


@pytest.mark.parametrize("role", ["system", "developer"])
def test_instructions_and_message_array(client: openai.OpenAI, role: str) -> None:
    r = client.responses.create(
        model=MODEL_ID,
        instructions="You are a helpful assistant.",
        input=[
            {"role": role, "content": "Answer briefly."},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "Write the numbers 1, 2, 3, 4, 5, 6, 7, 8 "},
                         {"type": "input_text", "text": "separated by commas."}]},
        ],
        max_output_tokens=40, temperature=0,
    )
    assert r.status == "completed"
    assert r.instructions == "You are a helpful assistant."
    assert r.output_text.strip().startswith("1, 2, 3")
    assert r.usage.input_tokens > 20  # instructions + both messages reached the prompt


@pytest.mark.parametrize("field", ["max_output_tokens", "max_tokens"])
def test_output_limit_gives_incomplete(http: httpx.Client, field: str) -> None:
    r = http.post("/responses", json={"model": MODEL_ID, "input": "Write a long story about a dragon.",
                                      field: 4, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 4
    assert body["max_output_tokens"] == 4
    assert body["choices"][0]["finish_reason"] == "length"


def test_max_tokens_alias_via_openai_client(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL_ID, input="Write a long story about a dragon.", temperature=0,
                                extra_body={"max_tokens": 3})
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3


def test_metadata_is_echoed(client: openai.OpenAI) -> None:
    meta = {"user_ref": "abc-123", "purpose": "e2e"}
    r = client.responses.create(model=MODEL_ID, input="Hi", max_output_tokens=2, metadata=meta)
    assert r.metadata == meta


def test_streaming_events(client: openai.OpenAI) -> None:
    events = []
    with client.responses.stream(model=MODEL_ID, input=COUNT_PROMPT, max_output_tokens=40,
                                 temperature=0) as stream:
        for event in stream:
            events.append(event)
            assert len(events) < 500
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert collapse(types) == STREAM_ORDER, types
    seqs = [e.sequence_number for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[0] == 0 and seqs == list(range(len(seqs)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.status == "completed"
    assert final.output_text == deltas
    assert deltas.strip() == COUNT_ANSWER
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == deltas
    ids = {e.response.id for e in events if e.type in ("response.created", "response.in_progress",
                                                       "response.completed")}
    assert ids == {final.id}
    assert events[0].response.status == "in_progress"
    assert final.usage is not None and final.usage.output_tokens > 0


def test_streaming_raw_frames(http: httpx.Client) -> None:
    body = {"model": MODEL_ID, "input": "Say hello.", "max_output_tokens": 6, "stream": True}
    with http.stream("POST", "/responses", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes()).decode("utf-8")
    assert raw.endswith("\n\n")
    frames = [f for f in raw.split("\n\n") if f and not f.startswith(":")]
    parsed = []
    for frame in frames:
        lines = frame.split("\n")
        assert len(lines) == 2, frame
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
        data = json.loads(lines[1][len("data: "):])
        assert data["type"] == lines[0][len("event: "):]
        parsed.append(data)
    assert [d["sequence_number"] for d in parsed] == list(range(len(parsed)))
    assert parsed[-1]["type"] in {"response.completed", "response.incomplete"}
    final = parsed[-1]["response"]
    assert final["status"] in {"completed", "incomplete"}
    text = "".join(d["delta"] for d in parsed if d["type"] == "response.output_text.delta")
    assert final["choices"][0]["message"]["content"] == text


def test_streaming_incomplete(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL_ID, input="Write a long story about a dragon.",
                                 max_output_tokens=3, temperature=0) as stream:
        events = list(stream)
    # The SDK's get_final_response() only knows response.completed; the last event carries the response.
    types = [e.type for e in events]
    assert types[-1] == "response.incomplete"
    assert "response.completed" not in types
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.usage.output_tokens == 3
