"""Parallel slots, queue overflow (503 + retry-after) and client disconnects freeing the slot."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import MODEL_ID, ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

COUNT_PROMPT = "Write the numbers 1, 2, 3, 4, 5, 6, 7, 8 separated by commas."
# At temperature 0 the model keeps counting for hundreds of tokens (no early EOS).
LONG_PROMPT = "Write the numbers from 1 to 500 separated by commas: 1, 2, 3,"
RECOVERY_TIMEOUT_S = 5.0


def long_body(max_tokens: int, **extra) -> dict:
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, **extra}


def stream_one(server: ServerProcess, prompt: str, max_tokens: int) -> dict:
    """Stream one chat completion; return its text, finish reasons, usage and timings."""
    with server.client() as c:
        started = time.monotonic()
        stream = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": prompt}],
                                           max_tokens=max_tokens, temperature=0, stream=True,
                                           stream_options={"include_usage": True})
        first = None
        parts, finishes, roles, usage, ids = [], [], [], None, set()
        for chunk in stream:
            ids.add(chunk.id)
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    if first is None:
                        first = time.monotonic()
                    parts.append(choice.delta.content)
                if choice.delta.role:
                    roles.append(choice.delta.role)
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        return {"text": "".join(parts), "finishes": finishes, "roles": roles, "usage": usage, "ids": ids,
                "started": started, "first": first, "ended": time.monotonic()}


# -- (a) parallel slots ------------------------------------------------------------------------------

def test_four_concurrent_streams(server: ServerProcess) -> None:
    jobs = [(COUNT_PROMPT, 40), (LONG_PROMPT, 40), (COUNT_PROMPT, 40), (LONG_PROMPT, 40)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(stream_one, server, p, n) for p, n in jobs]
        results = [f.result(timeout=120) for f in futures]
    for (prompt, _), res in zip(jobs, results):
        assert res["roles"] == ["assistant"]
        assert len(res["ids"]) == 1
        assert res["usage"] is not None
        assert res["usage"].completion_tokens > 0
        assert res["usage"].total_tokens == res["usage"].prompt_tokens + res["usage"].completion_tokens
        if prompt == COUNT_PROMPT:
            assert res["text"].strip().startswith("1, 2, 3, 4")
            assert res["finishes"] == ["stop"]
        else:
            assert "4, 5, 6, 7" in res["text"]
            assert res["finishes"] == ["length"]
            assert res["usage"].completion_tokens == 40
    assert len({i for r in results for i in r["ids"]}) == 4
    # They ran at the same time: every stream produced its first token before any stream ended.
    assert max(r["first"] for r in results) < min(r["ended"] for r in results)


# -- (b) queue overflow and (c) disconnects ----------------------------------------------------------------

@pytest.fixture(scope="module")
def one_slot(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory("--parallel", "1", "--max-queue", "0")


def cancelled(server: ServerProcess) -> float:
    """Generations the server counted as cancelled (its /metrics)."""
    text = httpx.get(server.root_url + "/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "shoal_requests_total" and sample.labels.get("status") == "cancelled")


class Lines:
    """Reads a chat SSE response a few chunks at a time.

    One ``iter_lines()`` iterator is kept for the whole response: abandoning a
    partly consumed httpx iterator closes the connection (httpcore closes on
    ``GeneratorExit``), which would end the stream early.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._it = response.iter_lines()

    def take(self, n: int, timeout: float = 30.0) -> list[dict]:
        """The next ``n`` ``data:`` chunks (bounded in count and time)."""
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            if len(out) >= n:
                break
            assert time.monotonic() < deadline, "stream too slow"
            line = next(self._it)
            if line.startswith("data: "):
                assert line != "data: [DONE]", f"stream ended after {out}"
                out.append(json.loads(line[len("data: "):]))
        assert len(out) == n, out
        return out


def wait_until_free(srv: ServerProcess, timeout: float = RECOVERY_TIMEOUT_S) -> tuple[httpx.Response, int]:
    """Retry a tiny non-streaming request until it is not a 503 (bounded); return it and the 503 count."""
    deadline = time.monotonic() + timeout
    busy = 0
    with srv.http() as http:
        while True:
            r = http.post("/chat/completions", json={"model": MODEL_ID, "max_tokens": 2,
                                                     "messages": [{"role": "user", "content": "Hi"}]})
            if r.status_code != 503 or time.monotonic() > deadline:
                return r, busy
            busy += 1
            time.sleep(0.1)


def assert_overloaded(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers.get("retry-after") is not None
    assert int(r.headers["retry-after"]) >= 1
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["type"] == "server_error"
    assert err["code"] == "overloaded"


def test_queue_overflow_is_503_with_retry_after(one_slot: ServerProcess) -> None:
    with one_slot.http() as holder, holder.stream("POST", "/chat/completions",
                                                  json=long_body(400, stream=True)) as held:
        assert held.status_code == 200
        lines = Lines(held)
        lines.take(2)  # the slot is taken and generating
        with one_slot.http() as http:
            assert_overloaded(http.post("/chat/completions", json={
                "model": MODEL_ID, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}))
            assert_overloaded(http.post("/chat/completions", json={
                "model": MODEL_ID, "max_tokens": 2, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}))
            assert_overloaded(http.post("/responses", json={"model": MODEL_ID, "input": "Hi",
                                                            "max_output_tokens": 2}))
        with one_slot.client() as c:
            with pytest.raises(openai.InternalServerError) as info:
                c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=2)
            assert info.value.status_code == 503
            assert info.value.response.headers["retry-after"] == "1"
            with pytest.raises(openai.APIStatusError) as info2:
                c.responses.create(model=MODEL_ID, input="Hi", max_output_tokens=2, stream=True)
            assert info2.value.status_code == 503
        # The held stream is still going: it was not disturbed by the rejected requests.
        more = lines.take(3)
        assert all(m["choices"][0]["finish_reason"] is None for m in more)
    # Closing the held stream frees the slot again.
    r, _ = wait_until_free(one_slot)
    assert r.status_code == 200, r.text


def test_disconnect_frees_the_slot(one_slot: ServerProcess) -> None:
    r, _ = wait_until_free(one_slot)
    assert r.status_code == 200, r.text
    cancelled_before = cancelled(one_slot)
    with one_slot.http() as http, http.stream("POST", "/chat/completions",
                                             json=long_body(2000, stream=True)) as held:
        assert held.status_code == 200
        lines = Lines(held)
        chunks = lines.take(3)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        # While it runs, the single slot is busy.
        with one_slot.http() as other:
            assert_overloaded(other.post("/chat/completions", json={
                "model": MODEL_ID, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}))
    # Leaving the block closes the half-read response and its connection.
    closed = time.monotonic()
    r, busy = wait_until_free(one_slot)
    assert r.status_code == 200, f"slot still busy after {RECOVERY_TIMEOUT_S} s ({busy} x 503): {r.text}"
    assert r.json()["usage"]["completion_tokens"] == 2
    # The engine stopped too: the follow-up did not wait for 2000 tokens to be generated.
    assert time.monotonic() - closed < RECOVERY_TIMEOUT_S + 5
    deadline = time.monotonic() + 5
    while cancelled(one_slot) <= cancelled_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cancelled(one_slot) > cancelled_before


def test_openai_stream_close_frees_the_slot(one_slot: ServerProcess) -> None:
    with one_slot.client() as c:
        stream = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": LONG_PROMPT}],
                                           max_tokens=2000, temperature=0, stream=True)
        for seen, _chunk in enumerate(stream, 1):
            if seen >= 3:
                break
        stream.close()
    r, busy = wait_until_free(one_slot)
    assert r.status_code == 200, f"slot still busy after {RECOVERY_TIMEOUT_S} s ({busy} x 503): {r.text}"
