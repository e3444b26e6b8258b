"""Drops `ix_jobs_status`: the (status, ...) indexes of core_0003 serve its queries.

Every status change (two or three per job) rewrote that index too; without it a worker
spends about 15 µs less CPU per job on SQLite (docs/benchmarks.md).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "core_0004"
down_revision: str | None = "core_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_jobs_status", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status", "jobs", ["status"])
