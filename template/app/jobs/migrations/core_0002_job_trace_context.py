"""`jobs.trace_context`: the traceparent of the request that enqueued each job."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

from app.core.migrate import refuse_unless_null

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
    # Dropping values would cut those jobs' next attempts off their request's trace.
    refuse_unless_null("jobs", "trace_context")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trace_context")
