"""SQLAlchemy table definitions."""

from __future__ import annotations

from sqlalchemy import JSON, Float, Index, Integer, String, Text
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

    __table_args__ = (Index("ix_responses_status_instance", "status", "instance"),)
