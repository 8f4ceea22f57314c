"""One request of each kind through the official ``openai`` client, classified by how it ended.

The classes that matter for the fault matrix:

* ``ok``: the client got a success (a 200 with a finish, ``response.completed`` /
  ``incomplete``, a background response that reached ``completed``);
* ``truncated``: a stream that ended cleanly without a finish / ``response.completed``
  and without an error event, a failure that looks like success;
* ``stuck``: no byte for ``deadline`` seconds, or a background response still
  ``queued`` / ``in_progress`` after ``deadline``.

Anything else is a visible failure, kept in the status histogram: an HTTP error
status (``502``, ``429``, ``503``...), ``stream-error`` (an in-stream error event
after a 200), ``failed`` (``response.failed``, or a background response that
failed), ``cut`` (the connection broke mid-answer) or ``conn-error`` (no
connection at all).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any

import openai

# The HTTP library this ``openai`` is built on (``httpx``, or ``httpx2`` in newer releases): a
# stream broken midway raises its exceptions, not the client's.
http = importlib.import_module(openai.Timeout.__module__.split(".")[0])

KINDS = ("chat", "chat_stream", "responses", "responses_stream", "background")
TERMINAL = ("completed", "incomplete", "failed", "cancelled")
MAX_TOKENS = 16
PROMPT = "Say hello."


@dataclass
class Outcome:
    """How one request ended."""

    kind: str
    status: str
    ok: bool = False
    truncated: bool = False
    stuck: bool = False
    response_id: str | None = None
    seconds: float = 0.0
    detail: str = ""


def client(base_url: str, key: str, deadline: float) -> openai.OpenAI:
    """An ``openai`` client without retries whose reads give up after ``deadline`` seconds of silence."""
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0,
                         timeout=openai.Timeout(deadline, connect=5.0))


def call(api: openai.OpenAI, kind: str, deadline: float, model: str) -> Outcome:
    """Send one request of ``kind`` to ``model`` and classify its end."""
    started = time.monotonic()
    out = Outcome(kind, "?")
    try:
        {"chat": _chat, "chat_stream": _chat_stream, "responses": _responses,
         "responses_stream": _responses_stream, "background": _background}[kind](api, out, deadline, model)
    except openai.APITimeoutError:
        out.status, out.stuck = "timeout", True
    except openai.APIConnectionError as exc:  # before the answer began, or (a stream) in the middle of it
        out.status, out.detail = "cut" if out.status == "200" else "conn-error", str(exc)[:200]
    except openai.APIStatusError as exc:
        out.status, out.detail = str(exc.status_code), _message(exc)
    except openai.APIError as exc:  # an error event inside a 200 stream
        out.status, out.detail = "stream-error", str(exc)[:200]
    except http.TimeoutException:
        out.status, out.stuck = "timeout", True
    except http.HTTPError as exc:  # the connection broke in the middle of an answer
        out.status, out.detail = "cut", f"{type(exc).__name__}: {exc}"[:200]
    out.seconds = round(time.monotonic() - started, 3)
    return out


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return str(error.get("code") or error.get("message") or exc.message)[:200]


def _chat(api: openai.OpenAI, out: Outcome, deadline: float, model: str) -> None:
    r = api.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS)
    finished = bool(r.choices) and r.choices[0].finish_reason is not None
    out.status, out.ok, out.truncated = "200", finished, not finished


def _chat_stream(api: openai.OpenAI, out: Outcome, deadline: float, model: str) -> None:
    finish = None
    with api.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                     max_tokens=MAX_TOKENS, stream=True,
                                     stream_options={"include_usage": True}) as stream:
        out.status = "200"
        for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
    out.status, out.ok, out.truncated = "200", finish is not None, finish is None


def _responses(api: openai.OpenAI, out: Outcome, deadline: float, model: str) -> None:
    r = api.responses.create(model=model, input=PROMPT, max_output_tokens=MAX_TOKENS, store=True)
    out.response_id = r.id
    out.status, out.ok = "200", r.status in ("completed", "incomplete")
    if not out.ok:
        out.status = r.status or "?"


def _responses_stream(api: openai.OpenAI, out: Outcome, deadline: float, model: str) -> None:
    last = None
    with api.responses.create(model=model, input=PROMPT, max_output_tokens=MAX_TOKENS, store=True,
                              stream=True) as stream:
        out.status = "200"
        for event in stream:
            if event.type == "response.created":
                out.response_id = event.response.id
            last = event.type
            if event.type == "error":
                out.status = "stream-error"
                return
    if last in ("response.completed", "response.incomplete"):
        out.status, out.ok = "200", True
    elif last == "response.failed":
        out.status = "failed"
    else:
        out.status, out.truncated = "200", True


def _background(api: openai.OpenAI, out: Outcome, deadline: float, model: str) -> None:
    r = api.responses.create(model=model, input=PROMPT, max_output_tokens=MAX_TOKENS, store=True, background=True)
    out.response_id = r.id
    status, until = r.status, time.monotonic() + deadline
    while status not in TERMINAL and time.monotonic() < until:
        time.sleep(0.2)
        try:
            status = api.responses.retrieve(r.id).status
        except (openai.APIConnectionError, openai.InternalServerError):
            continue  # the server is restarting, or its database is away: ask again
    if status in ("completed", "incomplete"):
        out.status, out.ok = "200", True
    elif status in TERMINAL:
        out.status = "failed" if status == "failed" else status
    else:
        out.status, out.stuck, out.detail = "bg-" + str(status), True, f"still {status} after {deadline:.0f} s"


def outcome_dict(o: Outcome) -> dict[str, Any]:
    """The outcome as JSON."""
    return {"kind": o.kind, "status": o.status, "ok": o.ok, "truncated": o.truncated, "stuck": o.stuck,
            "response_id": o.response_id, "seconds": o.seconds, "detail": o.detail}
