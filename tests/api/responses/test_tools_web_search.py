"""The built-in web_search tool loop over HTTP: a scripted model, a local SearxNG-compatible stub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoal.core.types import Finish, NamedTool, TextDelta, ToolCallDelta, Usage
from tests.api.responses.sdk import sdk_accumulate, validate_event
from tests.frames import split_frames
from tests.scripted import ScriptedBackend, make_app
from tests.tools.searxng_stub import SearchStub, searxng_stub

BODY = {"model": "test-model", "input": "What is a shoal?", "tools": [{"type": "web_search"}]}


def search_call(query: str, call_id: str = "call_s") -> list[Any]:
    return [ToolCallDelta(0, id=call_id, name="web_search"), ToolCallDelta(0, arguments=json.dumps({"query": query})),
            Finish("tool_calls", Usage(10, 5))]


def answer(*pieces: str) -> list[Any]:
    return [*(TextDelta(p) for p in pieces), Finish("stop", Usage(30, 12))]


@pytest.fixture
def stub() -> Iterator[SearchStub]:
    with searxng_stub() as s:
        yield s


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def client(stub: SearchStub, backend: ScriptedBackend) -> Iterator[TestClient]:
    with make_app(backend, web_search_url=stub.url) as c:
        yield c


def stream(client: TestClient, **fields: Any) -> list[dict[str, Any]]:
    resp = client.post("/v1/responses", json={**BODY, **fields, "stream": True})
    assert resp.status_code == 200, resp.text
    events = [json.loads(f["data"]) for f in split_frames(resp.content) if "data" in f]
    for event in events:
        validate_event(event)
    return events


def test_exact_event_order_with_a_cited_answer(client: TestClient, backend: ScriptedBackend,
                                               stub: SearchStub) -> None:
    backend.add(*search_call("shoal fish"))
    backend.add(*answer("A shoal is a group of fish ", "(https://example.org/shoal)."))
    events = stream(client)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.web_search_call.in_progress", "response.web_search_call.searching",
        "response.web_search_call.completed", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.annotation.added",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]
    assert stub.queries == ["shoal fish"]
    added = events[2]["item"]
    assert added["type"] == "web_search_call" and added["status"] == "in_progress"
    assert added["action"] == {"type": "search", "query": "shoal fish"}
    assert events[6]["item"]["status"] == "completed"
    annotation = events[11]["annotation"]
    text = events[12]["text"]
    assert annotation["type"] == "url_citation" and annotation["url"] == "https://example.org/shoal"
    assert text[annotation["start_index"]:annotation["end_index"]] == "https://example.org/shoal"
    assert annotation["title"] == "Shoal (fish)"
    final = events[-1]["response"]
    assert final["usage"]["input_tokens"] == 40 and final["usage"]["output_tokens"] == 17
    assert final["output"][1]["content"][0]["annotations"] == [annotation]
    parsed = sdk_accumulate(events)
    assert [o.type for o in parsed.output] == ["web_search_call", "message"]
    assert parsed.output[1].content[0].annotations[0].url == "https://example.org/shoal"


def test_the_results_go_back_to_the_model(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*search_call("shoal"))
    backend.add(*answer("Fish [1]."))
    body = client.post("/v1/responses", json=BODY).json()
    first, second = backend.requests
    assert [t.name for t in first.tools] == ["web_search"] and first.tool_choice == "auto"
    call_turn, results = second.messages[-2:]
    assert call_turn.role == "assistant" and call_turn.tool_calls[0].name == "web_search"
    assert call_turn.tool_calls[0].arguments == '{"query": "shoal"}'
    assert results.role == "tool" and results.tool_call_id == call_turn.tool_calls[0].id
    assert "[1] Shoal (fish)\nURL: https://example.org/shoal\nA shoal is a group of fish." in results.content
    (annotation,) = body["output"][1]["content"][0]["annotations"]
    assert body["output"][1]["content"][0]["text"][annotation["start_index"]:annotation["end_index"]] == "[1]"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["tools"] == [{"type": "web_search"}]


def test_an_answer_without_citations_gets_a_sources_line(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*search_call("shoal"))
    backend.add(*answer("A group of fish."))
    body = client.post("/v1/responses", json=BODY).json()
    part = body["output"][1]["content"][0]
    assert part["text"].startswith("A group of fish.\n\nSources: [Shoal (fish)](https://example.org/shoal), ")
    assert len(part["annotations"]) == 3
    for a in part["annotations"]:
        assert part["text"][a["start_index"]:a["end_index"]] == f"[{a['title']}]({a['url']})"


def test_forced_choice_applies_to_the_first_round_and_sources_are_included(
        client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*search_call("shoal"))
    backend.add(*answer("https://example.org/sandbar"))
    body = client.post("/v1/responses", json={**BODY, "tool_choice": {"type": "web_search"},
                                              "include": ["web_search_call.action.sources"]}).json()
    assert backend.requests[0].tool_choice == NamedTool("web_search")
    assert backend.requests[1].tool_choice == "auto"
    assert body["tool_choice"] == {"type": "web_search"}
    assert body["output"][0]["action"]["sources"] == [{"type": "url", "url": r["url"]}
                                                      for r in (
                                                          {"url": "https://example.org/shoal"},
                                                          {"url": "https://example.org/schooling"},
                                                          {"url": "https://example.org/sandbar"})]


def test_searches_are_bounded(client: TestClient, backend: ScriptedBackend) -> None:
    for n in range(3):
        backend.add(*search_call(f"q{n}", call_id=f"call_{n}"))
    backend.add(*answer("done"))
    body = client.post("/v1/responses", json=BODY).json()
    assert [o["type"] for o in body["output"]] == ["web_search_call"] * 3 + ["message"]
    assert [t.name for t in backend.requests[3].tools] == []  # withdrawn after the third search


def test_a_failed_search_is_reported_and_the_model_still_answers(client: TestClient, backend: ScriptedBackend,
                                                                 stub: SearchStub) -> None:
    stub.status = 500
    backend.add(*search_call("shoal"))
    backend.add(*answer("I could not search."))
    events = stream(client)
    item_done = [e for e in events if e["type"] == "response.output_item.done"]
    assert item_done[0]["item"]["type"] == "web_search_call" and item_done[0]["item"]["status"] == "failed"
    assert "response.web_search_call.completed" not in [e["type"] for e in events]
    assert events[-1]["response"]["output"][1]["content"][0]["text"] == "I could not search."
    assert backend.requests[1].messages[-1].content == 'No results found for "shoal".'


def test_no_search_means_a_plain_answer(client: TestClient, backend: ScriptedBackend) -> None:
    backend.add(*answer("Hello."))
    body = client.post("/v1/responses", json=BODY).json()
    assert [o["type"] for o in body["output"]] == ["message"]
    assert body["output"][0]["content"][0]["annotations"] == []


def test_a_function_named_web_search_beside_the_builtin_is_a_400(client: TestClient,
                                                                  backend: ScriptedBackend) -> None:
    resp = client.post("/v1/responses", json={**BODY, "tools": [{"type": "web_search"},
                                                                {"type": "function", "name": "web_search"}]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "tools"
    assert backend.requests == []
