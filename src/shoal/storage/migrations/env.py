"""Alembic environment: runs on the connection Shoal hands in (see storage/db.py)."""

from __future__ import annotations

from alembic import context

from shoal.storage.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `shoal db upgrade`, which provides the connection.")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
