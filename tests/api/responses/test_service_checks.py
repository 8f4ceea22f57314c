"""A Responses request's schemas are checked once, however many truncation steps it takes."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.api import formats
from shoal.core.backend import BackendFailure
from tests.scripted import ScriptedBackend, make_app

TOOL = {"type": "function", "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}


def test_truncation_steps_do_not_repeat_the_schema_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = formats.check_schema

    def counting(schema: Any, *, what: str, param: str) -> None:
        checked.append(param)
        real(schema, what=what, param=param)

    monkeypatch.setattr(formats, "check_schema", counting)
    too_long = BackendFailure("prompt too long", client_error=True, code="context_length_exceeded")
    backend = ScriptedBackend()
    with make_app(backend) as client:
        previous = None
        for turn in range(3):  # three stored turns to drop
            body = {"model": "test-model", "input": f"turn {turn}", "previous_response_id": previous}
            previous = client.post("/v1/responses", json=body).json()["id"]
        checked.clear()
        backend.add(too_long).add(too_long)  # two truncation steps, then the default "ok"
        resp = client.post("/v1/responses", json={"model": "test-model", "input": "now", "tools": [TOOL],
                                                  "truncation": "auto", "previous_response_id": previous})
    assert resp.status_code == 200, resp.text
    assert len(backend.requests) == 3 + 3  # the three turns, then three tries of the last one
    assert checked == ["tools[0].parameters"]
