"""Stateful Responses API end to end: stored responses, chains, restarts, keys, background mode."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from .conftest import MODEL_ID, ServerProcess, ServerFactory

pytestmark = pytest.mark.e2e

EVENTS = TypeAdapter(ResponseStreamEvent)
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def wait_until_done(client: openai.OpenAI, response_id: str, timeout: float = 60.0) -> openai.types.responses.Response:
    """Poll a background response (bounded) until it leaves queued / in_progress."""
    deadline = time.monotonic() + timeout
    while True:
        resp = client.responses.retrieve(response_id)
        if resp.status not in ("queued", "in_progress"):
            return resp
        assert time.monotonic() < deadline, f"{response_id} still {resp.status} after {timeout} s"
        time.sleep(0.1)


def test_chain_of_twenty_turns_grows_history(client: openai.OpenAI) -> None:
    previous = None
    input_tokens = []
    for turn in range(20):
        resp = client.responses.create(model=MODEL_ID, input=f"Turn {turn}: say ok.", max_output_tokens=3,
                                       temperature=0, previous_response_id=previous)
        assert resp.previous_response_id == previous
        assert resp.output[-1].type == "message"
        input_tokens.append(resp.usage.input_tokens)
        previous = resp.id
    assert all(b > a for a, b in zip(input_tokens, input_tokens[1:])), input_tokens
    # input_items lists only the last turn's own input.
    items = client.responses.input_items.list(previous)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Turn 19: say ok."


def test_unknown_previous_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=MODEL_ID, input="hi", previous_response_id="resp_doesnotexist",
                                max_output_tokens=2)
    assert err.value.body["param"] == "previous_response_id"


def test_store_false_cannot_be_fetched_or_continued(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=MODEL_ID, input="hi", max_output_tokens=2, store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL_ID, input="again", previous_response_id=resp.id, max_output_tokens=2)


def test_get_delete_roundtrip(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=MODEL_ID, input="hello", max_output_tokens=4, metadata={"k": "v"})
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == resp.output_text and got.metadata == {"k": "v"}
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(resp.id)


def test_restart_in_the_middle_of_a_chain(test_model_path: Path, tmp_path: Path) -> None:
    first = ServerProcess(test_model_path, tmp_path).start()
    try:
        with first.client() as c:
            r1 = c.responses.create(model=MODEL_ID, input="My name is Ada.", max_output_tokens=4, temperature=0)
            r2 = c.responses.create(model=MODEL_ID, input="Remember it.", max_output_tokens=4,
                                    previous_response_id=r1.id, temperature=0)
    finally:
        first.stop()
    second = ServerProcess(test_model_path, tmp_path).start()  # same data dir, new process
    try:
        with second.client() as c:
            assert c.responses.retrieve(r2.id).output_text == r2.output_text
            r3 = c.responses.create(model=MODEL_ID, input="What is my name?", max_output_tokens=4,
                                    previous_response_id=r2.id, temperature=0)
            assert r3.previous_response_id == r2.id
            assert r3.usage.input_tokens > r2.usage.input_tokens > r1.usage.input_tokens
    finally:
        second.stop()


def test_tool_loop_stateless_and_stateful(client: openai.OpenAI) -> None:
    call = {"type": "function_call", "call_id": "call_weather_1", "name": "get_weather",
            "arguments": json.dumps({"city": "Paris"})}
    result = {"type": "function_call_output", "call_id": "call_weather_1", "output": "22 degrees and sunny"}
    user = {"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}
    tools = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]

    # Stateless: the whole loop is sent every time.
    stateless = client.responses.create(model=MODEL_ID, input=[user, call, result], tools=tools,
                                        max_output_tokens=8, temperature=0)
    assert stateless.status in ("completed", "incomplete") and stateless.output_text

    # A call without its result cannot be continued: a clear 400, as OpenAI answers.
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL_ID, input=[user, call], tools=tools, max_output_tokens=4)

    # Stateful: the call and its result are stored; the next turn sends only the new message.
    first = client.responses.create(model=MODEL_ID, input=[user, call, result], tools=tools, max_output_tokens=4,
                                    temperature=0)
    second = client.responses.create(model=MODEL_ID, input="And tomorrow?", previous_response_id=first.id,
                                     tools=tools, max_output_tokens=8, temperature=0)
    assert second.output_text
    alone = client.responses.create(model=MODEL_ID, input="And tomorrow?", tools=tools, max_output_tokens=8,
                                    temperature=0, store=False)
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    items = client.responses.input_items.list(first.id, order="asc")
    assert [i.type for i in items.data] == ["message", "function_call", "function_call_output"]

    # Feeding response.output back as input (the stateless agent loop of the SDK docs).
    again = client.responses.create(
        model=MODEL_ID, input=[user, *[o.model_dump(exclude_none=True) for o in stateless.output],
                               {"role": "user", "content": "Thanks!"}],
        max_output_tokens=4)
    assert again.output[-1].type == "message"


def test_keys_isolate_stored_responses(server_factory: ServerFactory) -> None:
    srv = server_factory("--api-key", "key-alpha-0123456789", "--api-key", "key-beta-01234567890", "--parallel", "2")
    with srv.client("key-alpha-0123456789") as alpha, srv.client("key-beta-01234567890") as beta:
        resp = alpha.responses.create(model=MODEL_ID, input="secret", max_output_tokens=2)
        assert alpha.responses.retrieve(resp.id).id == resp.id
        with pytest.raises(openai.NotFoundError):
            beta.responses.retrieve(resp.id)
        with pytest.raises(openai.NotFoundError):
            beta.responses.input_items.list(resp.id)
        with pytest.raises(openai.NotFoundError):
            beta.responses.create(model=MODEL_ID, input="x", previous_response_id=resp.id, max_output_tokens=2)
        with pytest.raises(openai.NotFoundError):
            beta.responses.delete(resp.id)
        assert alpha.responses.retrieve(resp.id).id == resp.id  # beta's delete did nothing


def test_background_poll_and_cancel(client: openai.OpenAI) -> None:
    quick = client.responses.create(model=MODEL_ID, input="Say hi.", max_output_tokens=6, background=True)
    assert quick.status in ("queued", "in_progress") and quick.background is True
    done = wait_until_done(client, quick.id)
    assert done.status in ("completed", "incomplete") and done.output_text

    slow = client.responses.create(model=MODEL_ID, input="Write a very long story about the sea.",
                                   max_output_tokens=3000, background=True)
    cancelled = client.responses.cancel(slow.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(slow.id).status == "cancelled"
    foreground = client.responses.create(model=MODEL_ID, input="hi", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(foreground.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")


def test_background_stream_resumes_after_sequence_number(client: openai.OpenAI) -> None:
    stream = client.responses.create(model=MODEL_ID, input="Count from one to ten.", max_output_tokens=24,
                                     background=True, stream=True, temperature=0)
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 5:
            break
    stream.close()
    response_id = seen[0].response.id
    cursor = seen[-1].sequence_number
    resumed = list(client.responses.retrieve(response_id, stream=True, starting_after=cursor))
    numbers = [e.sequence_number for e in resumed]
    assert numbers[0] == cursor + 1
    assert numbers == sorted(set(numbers))
    assert resumed[-1].type in TERMINAL
    assert sum(e.type in TERMINAL for e in resumed) == 1


def test_input_items_pagination(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    resp = client.responses.create(model=MODEL_ID, input=messages, max_output_tokens=2)
    asc = client.responses.input_items.list(resp.id, order="asc", limit=2)
    assert [i.content[0].text for i in asc.data] == ["message 0", "message 1"]
    assert asc.has_more is True
    nxt = client.responses.input_items.list(resp.id, order="asc", limit=2, after=asc.last_id)
    assert [i.content[0].text for i in nxt.data] == ["message 2", "message 3"]
    desc = client.responses.input_items.list(resp.id, limit=10)
    assert [i.content[0].text for i in desc.data] == [f"message {i}" for i in range(4, -1, -1)]
    assert desc.has_more is False
    # The SDK's auto-pagination walks every page.
    assert len(list(client.responses.input_items.list(resp.id, limit=2))) == 5


def test_every_stream_event_matches_the_sdk_classes(server: ServerProcess) -> None:
    body = {"model": MODEL_ID, "input": "Tell me a fact.", "max_output_tokens": 12, "stream": True,
            "include": ["message.output_text.logprobs"], "top_logprobs": 2}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{server.base_url}/responses", json=body) as resp:
            assert resp.status_code == 200
            events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    parsed = [EVENTS.validate_python(e) for e in events]
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    assert parsed[0].type == "response.created" and parsed[-1].type in TERMINAL
    deltas = [e for e in parsed if e.type == "response.output_text.delta"]
    assert deltas and all(d.output_index == 0 and d.content_index == 0 for d in deltas)
    done = next(e for e in parsed if e.type == "response.output_text.done")
    assert done.text == "".join(d.delta for d in deltas)
    assert "".join(lp.token for d in deltas for lp in d.logprobs) == done.text


def test_truncation_disabled_is_400_and_auto_drops_old_turns(server_factory: ServerFactory) -> None:
    srv = server_factory("--parallel", "1", "--ctx-per-slot", "256")
    filler = "The quick brown fox jumps over the lazy dog. " * 8  # ~90 tokens a turn
    with srv.client() as c:
        previous = None
        for _ in range(2):
            previous = c.responses.create(model=MODEL_ID, input=filler, max_output_tokens=2,
                                          previous_response_id=previous, truncation="auto").id
        with pytest.raises(openai.BadRequestError) as err:
            c.responses.create(model=MODEL_ID, input=filler, max_output_tokens=2, previous_response_id=previous)
        assert err.value.body["code"] == "context_length_exceeded"
        fitted = c.responses.create(model=MODEL_ID, input=filler, max_output_tokens=2,
                                    previous_response_id=previous, truncation="auto")
        assert fitted.status in ("completed", "incomplete") and fitted.truncation == "auto"


def test_background_left_running_is_failed_after_restart(test_model_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "shoal.yaml"
    config.write_text("response_lease_seconds: 2\n")
    first = ServerProcess(test_model_path, tmp_path, ("--config", str(config))).start()
    try:
        with first.client() as c:
            resp = c.responses.create(model=MODEL_ID, input="Write a very long story.", max_output_tokens=4000,
                                      background=True)
            assert c.responses.retrieve(resp.id).status in ("queued", "in_progress")
    finally:
        assert first.proc is not None
        first.proc.kill()  # no graceful shutdown: the response stays in_progress in the database
        first.proc.wait(timeout=10)
    second = ServerProcess(test_model_path, tmp_path, ("--config", str(config))).start()
    try:
        with second.client() as c:
            # Its lease (2 s) runs out, and the restarted server's sweeper fails it.
            after = wait_until_done(c, resp.id)
            assert after.status == "failed"
            assert after.error is not None and "stopped" in after.error.message
    finally:
        second.stop()
