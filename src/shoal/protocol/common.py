"""Wire types shared by the chat and responses schemas."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(ge=0, le=1)]
TopLogprobs = Annotated[int, Field(ge=0, le=20)]


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
    """``stop`` may be one string or up to four; returns a list or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value
    raise ValueError("must be a string or an array of at most 4 strings")


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
    include_usage: bool | None = None
