"""Job operations: attempt_base, the indexes of GET /jobs and retention, job_schedules."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

from app.core.database import UtcDateTime

revision: str = "core_0003"
down_revision: str | None = "core_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_jobs_created_at_id": ["created_at", "id"],
    "ix_jobs_status_created_at_id": ["status", "created_at", "id"],
    "ix_jobs_kind_created_at_id": ["kind", "created_at", "id"],
    "ix_jobs_status_updated_at": ["status", "updated_at"],
}


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made the tables of this revision (its models before migrations existed)."""
    if not inspector.has_table("job_schedules") or not inspector.has_table("jobs"):
        return False
    return any(column["name"] == "attempt_base" for column in inspector.get_columns("jobs"))


def upgrade() -> None:
    # `cancelled` needs no change: jobs.status is a VARCHAR(16), not an enum or a CHECK.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("attempt_base", sa.Integer(), nullable=False, server_default="0")
        )
    for name, columns in INDEXES.items():
        op.create_index(name, "jobs", columns)
    op.create_table(
        "job_schedules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("next_run_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("job_schedules")  # derived state: the scheduler plans it again
    for name in INDEXES:
        op.drop_index(name, table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempt_base")
