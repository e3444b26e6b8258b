"""Job operations: the indexes GET /jobs and retention use, attempt_base, job_schedules."""

import sqlalchemy as sa
from alembic import op

from app.core.database import UtcDateTime

revision = "core_0003"
down_revision = "core_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `cancelled` needs no schema change: jobs.status is a VARCHAR(16), not an enum.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("attempt_base", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index("ix_jobs_created_at_id", "jobs", ["created_at", "id"])
    op.create_index("ix_jobs_status_created_at_id", "jobs", ["status", "created_at", "id"])
    op.create_index("ix_jobs_kind_created_at_id", "jobs", ["kind", "created_at", "id"])
    op.create_index("ix_jobs_status_updated_at", "jobs", ["status", "updated_at"])
    op.create_table(
        "job_schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("next_run_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_schedules")
    op.drop_index("ix_jobs_status_updated_at", table_name="jobs")
    op.drop_index("ix_jobs_kind_created_at_id", table_name="jobs")
    op.drop_index("ix_jobs_status_created_at_id", table_name="jobs")
    op.drop_index("ix_jobs_created_at_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempt_base")
