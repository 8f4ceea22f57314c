"""``POST /v1/embeddings``: OpenAI's request body, with the caps that bound its cost.

``input`` is one string, an array of strings, one array of token ids, or an array of
such arrays (OpenAI's four forms). Limits follow OpenAI's: at most 2,048 inputs, none
empty; and, since every input is read by the model, at most :data:`MAX_INPUT_CHARS`
characters (or :data:`MAX_INPUT_TOKENS` token ids) in all, checked before any work.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, StrictInt, StrictStr, field_validator

from shoal.protocol.common import WireModel

MAX_INPUTS = 2048
"""OpenAI's limit on the items of ``input``."""
MAX_INPUT_TOKENS = 300_000
"""OpenAI's limit on the tokens of one request, here on the token ids sent."""
MAX_INPUT_CHARS = 4 * MAX_INPUT_TOKENS
"""The same bound for text: about four characters a token."""
MAX_TOKEN_ID = 2**31 - 1

TokenId = Annotated[int, Strict(), Field(ge=0, le=MAX_TOKEN_ID)]
Input = StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]]


class EmbeddingsRequest(WireModel):
    """Create embeddings for ``input`` with ``model``."""

    model: StrictStr = Field(min_length=1)
    input: Input
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(ge=1, le=65_536)] | None = None
    user: StrictStr | None = None

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: Input) -> Input:
        items = normalized(value)
        if not items:
            raise ValueError("must not be empty")
        if len(items) > MAX_INPUTS:
            raise ValueError(f"may hold at most {MAX_INPUTS} inputs, not {len(items)}")
        if any(len(item) == 0 for item in items):
            raise ValueError("must not contain an empty string or an empty token array")
        size = sum(len(item) for item in items)
        if isinstance(items[0], str) and size > MAX_INPUT_CHARS:
            raise ValueError(f"holds {size} characters; at most {MAX_INPUT_CHARS} are read per request")
        if not isinstance(items[0], str) and size > MAX_INPUT_TOKENS:
            raise ValueError(f"holds {size} tokens; at most {MAX_INPUT_TOKENS} are read per request")
        return value

    def inputs(self) -> tuple[str, ...] | tuple[tuple[int, ...], ...]:
        """Every input, as strings or token-id tuples (one form per request)."""
        return normalized(self.input)


def normalized(value: Input) -> tuple[str, ...] | tuple[tuple[int, ...], ...]:
    """OpenAI's four forms of ``input`` as a tuple of strings or of token-id tuples."""
    if isinstance(value, str):
        return (value,)
    strings = [item for item in value if isinstance(item, str)]
    if len(strings) == len(value):
        return tuple(strings)
    ids = [item for item in value if isinstance(item, int)]
    if len(ids) == len(value):
        return (tuple(ids),)
    return tuple(tuple(item) for item in value if isinstance(item, list))
