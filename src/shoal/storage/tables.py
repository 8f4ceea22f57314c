"""SQLAlchemy table definitions."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every Shoal table."""


class ResponseRow(Base):
    """A stored Response: its object, its input items, and the conversation so far."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    background: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    body: Mapped[dict] = mapped_column(JSON, nullable=False)
    input_items: Mapped[list] = mapped_column(JSON, nullable=False)
    conversation: Mapped[list] = mapped_column(JSON, nullable=False)
    instance: Mapped[str | None] = mapped_column(Text)
    """The process running a background response (informational; recovery goes by the lease)."""
    lease_until: Mapped[float | None] = mapped_column(Float)
    """While queued / in progress: the running process renews it; once past, any replica fails the row."""

    __table_args__ = (Index("ix_responses_status_lease", "status", "lease_until"),)


class ApiKeyRow(Base):
    """A managed model access key: only its SHA-256 hash is kept, with its scope and limits."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    models: Mapped[list | None] = mapped_column(JSON)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    budget_usd: Mapped[float | None] = mapped_column(Float)
    budget_period: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    rotated_at: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),)


class UsageRow(Base):
    """One metered generation: who, what, how it ended, tokens, timings and cost."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    day: Mapped[str] = mapped_column(String(10), nullable=False)
    key_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    deployment: Mapped[str] = mapped_column(String(256), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    input_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    cached_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    output_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False)
    uid: Mapped[str | None] = mapped_column(String(32))
    """Random id given by the writer: a retried insert skips the rows that did land (NULL before 0003)."""
    draft_tokens: Mapped[int | None] = mapped_column(Integer)
    """Speculative decoding: tokens drafted (NULL before 0004)."""
    draft_accepted_tokens: Mapped[int | None] = mapped_column(Integer)
    """Speculative decoding: drafted tokens accepted (NULL before 0004)."""

    __table_args__ = (Index("ix_usage_key_ts", "key_id", "ts"), Index("ix_usage_ts", "ts"),
                      Index("uq_usage_uid", "uid", unique=True))
