"""Wire types shared by the chat and responses schemas."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, field_validator

# Numbers and flags are strict, as OpenAI's are: "stream": "yes" or "max_tokens": "12"
# is a 400 naming the field, never a guess. Every number is bounded, so nothing too
# big for the engine's (or an upstream's) integer types gets past the schema.
Flag = StrictBool
Temperature = Annotated[float, Strict(), Field(ge=0, le=2)]
TopP = Annotated[float, Strict(), Field(ge=0, le=1)]
TopLogprobs = Annotated[int, Strict(), Field(ge=0, le=20)]
Penalty = Annotated[float, Strict(), Field(ge=-2, le=2)]
"""``presence_penalty`` / ``frequency_penalty``: -2.0 to 2.0."""
MAX_TOKEN_LIMIT = 2**31 - 1
TokenLimit = Annotated[int, Strict(), Field(ge=1, le=MAX_TOKEN_LIMIT)]
"""``max_tokens`` and its kin: at least 1, and within the engine's 32-bit token counts."""
Seed = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
"""``seed``: a signed 64-bit integer, as OpenAI documents it."""
MAX_STOP_CHARS = 256
"""The longest stop sequence: llama.cpp rescans the tail of the output for each stop string after every token."""
MAX_LOGIT_BIAS = 300
MAX_TOOLS = 128
"""OpenAI's limit on ``tools``."""
LogitBias = Annotated[float, Strict(), Field(ge=-100, le=100)]


class WireModel(BaseModel):
    """Base of every request schema.

    Unknown fields are kept aside (``model_extra``) rather than rejected, so
    vendor extras sent by other SDKs never break a call; the router logs them.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def ignored_fields(self) -> list[str]:
        """Names of the fields Shoal received but does not use."""
        return sorted((self.model_extra or {}).keys())


def normalize_stop(value: Any) -> list[str] | None:
    """``stop`` may be one string or up to four, each up to :data:`MAX_STOP_CHARS`; returns a list or None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(len(v) > MAX_STOP_CHARS for v in value):
            raise ValueError(f"a stop sequence may have at most {MAX_STOP_CHARS} characters")
        return value
    raise ValueError("must be a string or an array of at most 4 strings")


def check_tool_count(value: Any) -> Any:
    """At most :data:`MAX_TOOLS` tools; checked before the tools themselves are validated."""
    if isinstance(value, list) and len(value) > MAX_TOOLS:
        raise ValueError(f"at most {MAX_TOOLS} tools are allowed, got {len(value)}")
    return value


def check_logit_bias(value: dict[str, float] | None) -> dict[str, float] | None:
    """``logit_bias``: at most :data:`MAX_LOGIT_BIAS` token ids (as strings) mapped to -100..100."""
    if value is None:
        return None
    if len(value) > MAX_LOGIT_BIAS:
        raise ValueError(f"logit_bias may have at most {MAX_LOGIT_BIAS} entries, got {len(value)}")
    for key in value:
        if not (key.isascii() and key.isdigit() and len(key) <= 10):
            raise ValueError(f"logit_bias keys must be token ids, not '{key[:20]}'")
    return value


def check_message(role: str, *, has_content: bool, has_calls: bool, tool_call_id: str | None, has_images: bool,
                  noun: str = "messages", image_parts: str = "image content parts") -> None:
    """The rules every API's conversation message follows, as OpenAI's chat API states them.

    A tool result names its call; only an assistant message that makes calls may
    leave out its content; only the user sends images. ``noun`` and
    ``image_parts`` word the error as the client's API names things.
    """
    if role == "tool" and not tool_call_id:
        raise ValueError(f"{noun} with role 'tool' must have a 'tool_call_id'")
    if not has_content and not (role == "assistant" and has_calls):
        raise ValueError(f"{noun} with role '{role}' must have 'content'")
    if role != "user" and has_images:
        raise ValueError(f"{image_parts} are only allowed in messages with role 'user', not '{role}'")


class StopMixin(BaseModel):
    """Adds the validated ``stop`` field."""

    stop: str | list[str] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _check_stop(cls, value: Any) -> Any:
        return normalize_stop(value)


def check_metadata(value: dict[str, Any] | None) -> dict[str, str] | None:
    """Metadata: at most 16 pairs, keys up to 64 chars, string values up to 512."""
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("metadata can have at most 16 key-value pairs")
    for key, val in value.items():
        if len(key) > 64:
            raise ValueError(f"metadata key '{key[:20]}…' is longer than 64 characters")
        if not isinstance(val, str):
            raise ValueError(f"metadata value for '{key}' must be a string")
        if len(val) > 512:
            raise ValueError(f"metadata value for '{key}' is longer than 512 characters")
    return value


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` changes anything."""

    model_config = ConfigDict(extra="allow")
    include_usage: Flag | None = None
