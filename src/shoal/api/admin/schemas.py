"""Request bodies of the admin API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class KeyCreate(BaseModel):
    """``POST /admin/keys``: a new model access key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="A label for people (who or what uses the key).")
    models: list[str] | None = Field(None, description="Model ids the key may use; omitted = all models.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens (prompt + output) per minute.")
    budget_usd: float | None = Field(None, ge=0, description="Spend allowed per budget period, in USD.")
    budget_period: Literal["day", "month"] | None = Field(None, description="UTC day or month (default month).")
