"""Graceful shutdown of a real ``shoal serve``: SIGTERM drains the requests in flight, within a bound.

On SIGTERM the server stops accepting connections (a load balancer's next try goes to another
replica), lets a stream in flight finish, and exits 0. With ``--drain-seconds`` too short for the
stream, the stream is cut at the bound and the process exits 0 all the same.
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import httpx
import openai
import pytest

from .conftest import MODEL_ID, ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

# Greedy, and a prompt this model answers at length (as in test_keys.py): the stream runs for seconds.
COUNT = [{"role": "user", "content": "Write the numbers from 1 to 500 separated by commas: 1, 2, 3,"}]
SHUTDOWN_MARGIN_S = 15.0
"""Time past the drain bound for the lifespan shutdown (freeing the model, closing the database) and exit."""


def probe(srv: ServerProcess) -> int | str:
    """``GET /ready`` on a new connection: its status, or ``"refused"`` if no connection is accepted."""
    try:
        with httpx.Client(timeout=2.0) as http:
            return http.get(f"{srv.root_url}/ready").status_code
    except httpx.TransportError:
        return "refused"


def wait_exit(srv: ServerProcess, timeout: float) -> tuple[int | None, float]:
    """Wait (bounded) for the process to exit: its code (None if it did not) and when it exited."""
    assert srv.proc is not None
    try:
        code = srv.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic()
    return code, time.monotonic()


def stream_chunks(client: openai.OpenAI, max_tokens: int) -> Any:
    return client.chat.completions.create(model=MODEL_ID, messages=COUNT, max_tokens=max_tokens, temperature=0,
                                          stream=True, stream_options={"include_usage": True})


def test_sigterm_drains_the_stream_in_flight_then_exits_0(server_factory: ServerFactory) -> None:
    srv = server_factory("--parallel", "2", "--ctx-per-slot", "1024", "--drain-seconds", "60")
    assert srv.proc is not None
    with srv.client() as client:
        stream = stream_chunks(client, max_tokens=200)
        chunks = iter(stream)
        before = [next(chunks) for _ in range(3)]  # the generation is under way
        srv.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # While the stream drains, the server takes nothing new: a new connection is refused (or 503).
        deadline = signalled + 5
        seen = probe(srv)
        while seen == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = probe(srv)
        assert seen in ("refused", 503), seen
        assert srv.running, "the server exited before the stream in flight was done"
        after = list(chunks)  # the rest of the stream, to its end
    assert after, "the stream had ended before SIGTERM: the test proved nothing"
    finishes = [c.choices[0].finish_reason for c in before + after if c.choices]
    assert finishes[-1] in ("length", "stop"), finishes[-3:]
    usage = after[-1].usage  # the last event of the stream (include_usage)
    assert usage is not None and usage.completion_tokens == (200 if finishes[-1] == "length" else usage.completion_tokens)
    code, exited = wait_exit(srv, 60 + SHUTDOWN_MARGIN_S)
    assert code == 0, f"exit code {code}; log tail:\n{srv.log_tail()}"
    assert exited - signalled < 60 + SHUTDOWN_MARGIN_S
    assert "Traceback" not in srv.log_text()


def test_drain_bound_cuts_a_long_stream_and_exits_0_anyway(server_factory: ServerFactory) -> None:
    drain = 1.0
    srv = server_factory("--parallel", "1", "--ctx-per-slot", "4096", "--drain-seconds", str(drain))
    assert srv.proc is not None
    finishes: list[str | None] = []
    with srv.client() as client:
        stream = stream_chunks(client, max_tokens=3000)  # far longer than the bound at this model's speed
        chunks = iter(stream)
        next(chunks)
        srv.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        with pytest.raises((httpx.HTTPError, openai.APIError)):
            # The server closes the connection mid-stream: the client sees an incomplete body.
            for chunk in chunks:
                finishes += [c.finish_reason for c in chunk.choices]
                assert time.monotonic() - signalled < drain + SHUTDOWN_MARGIN_S, "the stream outlived the bound"
    cut = time.monotonic()
    assert not any(finishes), f"the stream finished ({finishes[-1]}) instead of being cut"
    assert cut - signalled >= drain - 0.2, "the stream was cut before the drain bound"
    code, exited = wait_exit(srv, drain + SHUTDOWN_MARGIN_S)
    assert code == 0, f"exit code {code}; log tail:\n{srv.log_tail()}"
    assert exited - signalled < drain + SHUTDOWN_MARGIN_S
    assert "timeout graceful shutdown exceeded" in srv.log_text()
