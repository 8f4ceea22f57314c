"""Background-response leases (replacing recovery by node id) and idempotent usage inserts.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("lease_until", sa.Float, nullable=True))
    op.drop_index("ix_responses_status_instance", table_name="responses")
    op.create_index("ix_responses_status_lease", "responses", ["status", "lease_until"])
    # Rows left running by a version that knew no leases: expired now, so the sweeper fails them.
    op.execute("UPDATE responses SET lease_until = 0 WHERE status IN ('queued', 'in_progress')")
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("uid", sa.String(32), nullable=True))
    op.create_index("uq_usage_uid", "usage", ["uid"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_usage_uid", table_name="usage")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("uid")
    op.drop_index("ix_responses_status_lease", table_name="responses")
    op.create_index("ix_responses_status_instance", "responses", ["status", "instance"])
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("lease_until")
