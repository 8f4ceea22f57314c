"""Usage rows record speculative decoding: tokens drafted and accepted.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("draft_tokens", sa.Integer, nullable=True))
        batch.add_column(sa.Column("draft_accepted_tokens", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("draft_accepted_tokens")
        batch.drop_column("draft_tokens")
