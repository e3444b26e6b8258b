"""Jobs keep the trace context of the request that enqueued them (`jobs.trace_context`)."""

import sqlalchemy as sa
from alembic import op

revision = "core_0002"
down_revision = "core_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites no row, and jobs enqueued untraced stay NULL.
    op.add_column("jobs", sa.Column("trace_context", sa.String(512), nullable=True))


def downgrade() -> None:
    kept = op.get_bind().execute(
        sa.text("SELECT count(*) FROM jobs WHERE trace_context IS NOT NULL")
    )
    count = kept.scalar_one()
    if count:
        # Dropping it would silently cut those jobs' next attempts off their request's trace.
        raise RuntimeError(
            f"refusing to drop jobs.trace_context: {count} job(s) still hold one. If losing "
            "them is fine, run UPDATE jobs SET trace_context = NULL, then downgrade again"
        )
    # Batch mode: SQLite cannot drop a column in place before 3.35; elsewhere a plain ALTER.
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trace_context")
