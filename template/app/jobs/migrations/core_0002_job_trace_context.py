"""`jobs.trace_context`: the traceparent of the request that enqueued each job."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

revision: str = "core_0002"
down_revision: str | None = "core_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made `jobs` with this column (before migrations existed)."""
    columns = inspector.get_columns("jobs") if inspector.has_table("jobs") else []
    return any(column["name"] == "trace_context" for column in columns)


def upgrade() -> None:
    # Nullable, no default: adding it rewrites no row, and jobs enqueued untraced stay NULL.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(length=512), nullable=True))


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
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trace_context")
