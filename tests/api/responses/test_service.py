"""The stateful Responses path over HTTP with a scripted backend: failures are stored as failed, keep-alives."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from shoal.core.backend import BackendFailure
from shoal.core.types import TextDelta
from tests.scripted import ScriptedBackend, make_app, text_script

MODEL = "test-model"


class Delay(asyncio.Event):
    """A script item that holds the generation for a while (prompt processing, say)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def wait(self) -> bool:  # type: ignore[override]
        await asyncio.sleep(self.seconds)
        return True


def sse_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line]


def events_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in sse_lines(text) if line.startswith("data: ")]


def test_stream_failure_is_response_failed_and_stored_failed() -> None:
    backend = ScriptedBackend([TextDelta("Hel"), BackendFailure("engine crashed")])
    with make_app(backend) as client:
        resp = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "stream": True})
        events = events_of(resp.text)
        assert events[-1]["type"] == "response.failed"
        response_id = events[0]["response"]["id"]
        stored = client.get(f"/v1/responses/{response_id}").json()
        assert stored["status"] == "failed"
        assert stored["error"]["message"] == "engine crashed"
        assert stored["output"][0]["content"][0]["text"] == "Hel"


def test_non_stream_failure_is_an_http_error_and_stored_failed() -> None:
    backend = ScriptedBackend([TextDelta("partial"), BackendFailure("upstream went away")])
    with make_app(backend) as client:
        resp = client.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        assert resp.status_code == 502
        assert resp.json()["error"]["message"] == "upstream went away"
        # The failed response is still on record (the id is not in the error body, so list via a new chain).
        ok = client.post("/v1/responses", json={"model": MODEL, "input": "again"})
        assert ok.status_code == 200 and ok.json()["status"] == "completed"


def test_keepalive_comments_while_the_prompt_is_processed() -> None:
    backend = ScriptedBackend([Delay(0.4), *text_script("done")])
    with make_app(backend, keepalive_seconds=0.05, prime_timeout=0.01) as client:
        resp = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "stream": True})
        lines = sse_lines(resp.text)
        created = lines.index("event: response.created")
        first_delta = lines.index("event: response.output_text.delta")
        keepalives = [i for i, line in enumerate(lines) if line.startswith(": keep-alive")]
        assert len(keepalives) >= 2
        # They go out after the response was created and while no token has come yet ...
        assert all(created < i < first_delta for i in keepalives)
        # ... between events, never inside one.
        assert all(lines[i + 1].startswith(("event: ", ": keep-alive")) for i in keepalives)
        assert events_of(resp.text)[-1]["type"] == "response.completed"


def test_background_failure_is_stored_failed() -> None:
    backend = ScriptedBackend([BackendFailure("no capacity upstream")])
    with make_app(backend) as client:
        created = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "background": True}).json()
        assert created["status"] == "queued"
        deadline = time.monotonic() + 10
        while True:
            body = client.get(f"/v1/responses/{created['id']}").json()
            if body["status"] not in ("queued", "in_progress"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert body["status"] == "failed"
        assert "no capacity" in body["error"]["message"]


def test_background_requires_store() -> None:
    with make_app(ScriptedBackend()) as client:
        resp = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "background": True,
                                                  "store": False})
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == "background"


def test_cancel_of_a_foreground_response_is_400() -> None:
    with make_app(ScriptedBackend()) as client:
        created = client.post("/v1/responses", json={"model": MODEL, "input": "hi"}).json()
        resp = client.post(f"/v1/responses/{created['id']}/cancel")
        assert resp.status_code == 400
        assert client.post("/v1/responses/resp_nope/cancel").status_code == 404


def test_encrypted_reasoning_round_trips() -> None:
    from shoal.core.types import Finish, ReasoningDelta, Usage

    backend = ScriptedBackend([ReasoningDelta("think hard"), TextDelta("42"), Finish("stop", Usage(3, 2))])
    with make_app(backend) as client:
        body = client.post("/v1/responses", json={"model": MODEL, "input": "q",
                                                  "include": ["reasoning.encrypted_content"]}).json()
        reasoning = body["output"][0]
        assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"]
        sent_back = {"type": "reasoning", "id": reasoning["id"], "summary": [],
                     "encrypted_content": reasoning["encrypted_content"]}
        client.post("/v1/responses", json={"model": MODEL, "input": [{"role": "user", "content": "q"}, sent_back,
                                                                     body["output"][1]]})
        assistant = [m for m in backend.requests[-1].messages if m.role == "assistant"]
        assert assistant and assistant[0].reasoning == "think hard"


def test_input_items_pages_with_after_and_before() -> None:
    with make_app(ScriptedBackend()) as client:
        messages = [{"role": "user", "content": f"m{i}"} for i in range(5)]
        rid = client.post("/v1/responses", json={"model": MODEL, "input": messages}).json()["id"]

        def page(**params: Any) -> dict[str, Any]:
            resp = client.get(f"/v1/responses/{rid}/input_items", params=params)
            assert resp.status_code == 200, resp.text
            return resp.json()

        def texts(body: dict[str, Any]) -> list[str]:
            return [item["content"][0]["text"] for item in body["data"]]

        everything = page(order="asc")
        ids = [item["id"] for item in everything["data"]]
        assert texts(everything) == ["m0", "m1", "m2", "m3", "m4"] and everything["has_more"] is False
        assert texts(page()) == ["m4", "m3", "m2", "m1", "m0"]  # newest first by default
        first = page(order="asc", limit=2)
        assert texts(first) == ["m0", "m1"] and first["has_more"] is True and first["last_id"] == ids[1]
        assert texts(page(order="asc", after=ids[1], limit=2)) == ["m2", "m3"]
        assert texts(page(order="asc", before=ids[3])) == ["m0", "m1", "m2"]
        assert texts(page(order="asc", after=ids[0], before=ids[3])) == ["m1", "m2"]
        assert texts(page(order="asc", after=ids[3], before=ids[1])) == []
        bad = client.get(f"/v1/responses/{rid}/input_items", params={"after": "msg_nope"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"


def wait_for_status(client: Any, response_id: str, want: set[str], timeout: float = 10.0) -> dict[str, Any]:
    """Poll ``GET /v1/responses/{id}`` (bounded) until its status is one of ``want``."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/responses/{response_id}").json()
        if body.get("status") in want:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def test_a_non_shoal_exception_in_the_background_runner_ends_the_row_failed(caplog: Any) -> None:
    backend = ScriptedBackend()
    with make_app(backend) as client:
        store = client.app.state.services.responses.store  # type: ignore[attr-defined]

        async def broken(*args: Any, **kwargs: Any) -> bool:
            raise RuntimeError("an unexpected bug")

        store.set_status = broken
        created = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "background": True}).json()
        body = wait_for_status(client, created["id"], {"failed", "completed", "cancelled"})
        assert body["status"] == "failed" and body["error"]["code"] == "server_error"
    assert any("background response" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def two_replicas(tmp_path: Any, a: ScriptedBackend, b: ScriptedBackend) -> Any:
    """Two apps on one SQLite file, with a short lease (ticks every 0.1 s)."""
    from contextlib import ExitStack

    stack = ExitStack()
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    clients = [stack.enter_context(make_app(backend, database_url=url, response_lease_seconds=0.3))
               for backend in (a, b)]
    return stack, clients


def test_a_cancel_on_another_replica_stops_the_run_and_stands(tmp_path: Any) -> None:
    running = ScriptedBackend([TextDelta("a"), Delay(30), *text_script("never")])
    stack, (a, b) = two_replicas(tmp_path, running, ScriptedBackend())
    with stack:
        rid = a.post("/v1/responses", json={"model": MODEL, "input": "hi", "background": True}).json()["id"]
        wait_for_status(a, rid, {"in_progress"})
        assert b.post(f"/v1/responses/{rid}/cancel").json()["status"] == "cancelled"
        deadline = time.monotonic() + 5
        while not running.closed_early or not running.closed_early[0]:
            assert time.monotonic() < deadline, "the run on replica A was not stopped"
            time.sleep(0.02)
        time.sleep(0.3)  # A's run has ended: its final write would have landed by now
        assert a.get(f"/v1/responses/{rid}").json()["status"] == "cancelled"
        assert b.get(f"/v1/responses/{rid}").json()["status"] == "cancelled"


def test_a_delete_on_another_replica_stops_the_run_and_is_not_undone(tmp_path: Any) -> None:
    running = ScriptedBackend([TextDelta("a"), Delay(30), *text_script("never")])
    stack, (a, b) = two_replicas(tmp_path, running, ScriptedBackend())
    with stack:
        rid = a.post("/v1/responses", json={"model": MODEL, "input": "hi", "background": True}).json()["id"]
        wait_for_status(a, rid, {"in_progress"})
        assert b.delete(f"/v1/responses/{rid}").status_code == 200
        deadline = time.monotonic() + 5
        while not running.closed_early or not running.closed_early[0]:
            assert time.monotonic() < deadline, "the run on replica A was not stopped"
            time.sleep(0.02)
        time.sleep(0.3)
        assert a.get(f"/v1/responses/{rid}").status_code == 404
        assert b.get(f"/v1/responses/{rid}").status_code == 404


def test_a_streamed_stored_response_is_stored_before_its_terminal_event() -> None:
    backend = ScriptedBackend(text_script("Hello"))
    with make_app(backend) as client:
        store = client.app.state.services.responses.store  # type: ignore[attr-defined]
        seen: list[str] = []
        save = store.save

        async def recording(record: Any) -> None:
            await save(record)
            seen.append(record.status)

        store.save = recording
        with client.stream("POST", "/v1/responses", json={"model": MODEL, "input": "hi", "stream": True}) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["type"] == "response.completed":
                    # The client has the terminal event: the response is already on record.
                    assert seen == ["completed"]
                    response_id = json.loads(line[6:])["response"]["id"]
        assert client.get(f"/v1/responses/{response_id}").json()["status"] == "completed"


def _database_down(client: Any) -> None:
    store = client.app.state.services.responses.store  # type: ignore[attr-defined]

    async def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("database unreachable")

    store.save = down


def test_a_stream_whose_response_cannot_be_stored_ends_failed_not_completed() -> None:
    backend = ScriptedBackend(text_script("Hello"))
    with make_app(backend) as client:
        _database_down(client)
        resp = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "stream": True})
        events = events_of(resp.text)
        assert [e["type"] for e in events].count("response.completed") == 0
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"]["code"] == "server_error"
        numbers = [e["sequence_number"] for e in events]
        assert numbers == sorted(set(numbers))


def test_a_whole_response_that_cannot_be_stored_is_a_503() -> None:
    backend = ScriptedBackend(text_script("Hello"))
    with make_app(backend) as client:
        _database_down(client)
        resp = client.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == "storage_unavailable"
        # Not stored, so not requested: store=false is served as usual.
        ok = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "store": False})
        assert ok.status_code == 200 and ok.json()["status"] == "completed"


def test_a_follow_up_is_routed_by_its_conversation() -> None:
    from shoal.routing.affinity import BalanceSpec

    with make_app(ScriptedBackend()) as client:
        balancer = client.app.state.services.pipeline.router.balancer  # type: ignore[attr-defined]
        balancer.specs[MODEL] = BalanceSpec("prefix")
        first = client.post("/v1/responses", json={"model": MODEL, "input": "hi"}).json()
        index = balancer.indexes[MODEL]
        assert index.keys.get(("response", None, first["id"])) == "scripted"
        # The follow-up finds its conversation's replica (the lookup side), then records its own id.
        seen: list[str | None] = []
        favoured = index.favoured

        def spy(deps: Any, request: Any, context: Any) -> Any:
            seen.append(context.previous_response_id)
            return favoured(deps, request, context)

        index.favoured = spy  # type: ignore[method-assign]
        second = client.post("/v1/responses", json={"model": MODEL, "input": "more",
                                                    "previous_response_id": first["id"]}).json()
        assert seen == [first["id"]]
        assert index.keys.get(("response", None, second["id"])) == "scripted"
