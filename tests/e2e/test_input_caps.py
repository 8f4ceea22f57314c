"""Input caps against a real server with the openai client: over-cap schemas and loose values are 400s."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from .conftest import MODEL_ID, ServerProcess

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Hi"}]
WIDE = {"type": "object", "properties": {"pick": {"enum": [f"value_{i:05d}" for i in range(3000)]}},
        "required": ["pick"]}


def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)
    return body


def test_over_cap_response_format_is_a_400_naming_the_schema(server: ServerProcess) -> None:
    client = server.client()
    err = refused(lambda: client.chat.completions.create(
        model=MODEL_ID, messages=MESSAGES, max_tokens=4,
        response_format={"type": "json_schema", "json_schema": {"name": "wide", "schema": WIDE}}))
    assert err["param"] == "response_format.json_schema.schema" and err["code"] == "schema_too_large"
    err = refused(lambda: client.responses.create(
        model=MODEL_ID, input="Hi", max_output_tokens=16,
        text={"format": {"type": "json_schema", "name": "wide", "schema": WIDE}}))
    assert err["param"] == "text.format.schema"


def test_required_over_many_tools_is_a_400(server: ServerProcess) -> None:
    tools: Any = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object"}}}
                  for i in range(200)]
    err = refused(lambda: server.client().chat.completions.create(
        model=MODEL_ID, messages=MESSAGES, max_tokens=4, tools=tools, tool_choice="required"))
    assert err["param"] == "tools"


@pytest.mark.parametrize(("field", "value"), [("stream", "yes"), ("max_tokens", 2**70), ("seed", 2**64),
                                              ("presence_penalty", 3)])
def test_loose_or_huge_values_are_400s_naming_the_field(server: ServerProcess, field: str, value: Any) -> None:
    err = refused(lambda: server.client().chat.completions.create(
        model=MODEL_ID, messages=MESSAGES, extra_body={field: value}))
    assert err["param"] == field


def test_huge_instructions_are_refused_before_tokenizing(server: ServerProcess) -> None:
    err = refused(lambda: server.client().responses.create(
        model=MODEL_ID, input="Hi", max_output_tokens=16, instructions="Be brief. " * 1_000_000))
    assert err["param"] == "instructions" and err["code"] == "context_length_exceeded"


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63)])
def test_the_edges_of_the_bounds_reach_the_engine_fine(server: ServerProcess, seed: int) -> None:
    resp = server.client().chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=4, seed=seed)
    assert resp.choices[0].finish_reason in ("stop", "length")
