"""Request bodies of the admin API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

INT32_MAX = 2**31 - 1


class KeyCreate(BaseModel):
    """``POST /admin/keys``: a new model access key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="A label for people (who or what uses the key).")
    models: list[str] | None = Field(None, description="Model ids the key may use; omitted = all models.")
    # Bounded by the columns (32-bit INTEGER): a larger number was a 500 from the database, not a 400.
    rpm: int | None = Field(None, ge=1, le=INT32_MAX, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, le=INT32_MAX, description="Tokens (prompt + output) per minute.")
    budget_usd: float | None = Field(None, ge=0, description="Spend allowed per budget period, in USD.")
    budget_period: Literal["day", "month"] | None = Field(None, description="UTC day or month (default month).")


class ReplicaCreate(BaseModel):
    """``POST /admin/v1/models/{model}/replicas``: one more replica of a model's upstream deployment."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(min_length=1, max_length=2048,
                          description="The replica's base URL, e.g. http://10.0.0.7:8000/v1.")
