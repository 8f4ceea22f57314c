"""``POST /v1/embeddings`` bodies: OpenAI's four input forms, and the caps on their cost."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shoal.protocol.embeddings import MAX_INPUT_CHARS, MAX_INPUT_TOKENS, EmbeddingsRequest


@pytest.mark.parametrize(("value", "inputs"), [
    ("hi", ("hi",)),
    (["a", "b"], ("a", "b")),
    ([1, 2], ((1, 2),)),
    ([[1], [2, 3]], ((1,), (2, 3))),
])
def test_the_four_forms(value: Any, inputs: tuple[Any, ...]) -> None:
    assert EmbeddingsRequest.model_validate({"model": "m", "input": value}).inputs() == inputs


@pytest.mark.parametrize("body", [
    {"model": "m", "input": []},
    {"model": "m", "input": ""},
    {"model": "m", "input": ["a", ""]},
    {"model": "m", "input": [[1], []]},
    {"model": "m", "input": ["a"] * 2049},
    {"model": "m", "input": ["a", 1]},
    {"model": "m", "input": [1.5]},
    {"model": "m", "input": [-1]},
    {"model": "m", "input": [2**31]},
    {"model": "m", "input": "x" * (MAX_INPUT_CHARS + 1)},
    {"model": "m", "input": [[1] * 1000] * (MAX_INPUT_TOKENS // 1000 + 1)},
    {"model": "m", "input": "x", "encoding_format": "hex"},
    {"model": "m", "input": "x", "dimensions": 0},
    {"model": "m", "input": "x", "dimensions": "8"},
    {"model": "", "input": "x"},
])
def test_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EmbeddingsRequest.model_validate(body)
