"""The `users` table, as the email scenario first shipped it."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

from app.core.database import UtcDateTime
from app.core.migrate import refuse_unless_empty

revision: str = "email_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("email",)
depends_on: str | Sequence[str] | None = "core_0001"


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made this table before migrations existed (start-up adopts it)."""
    return inspector.has_table("users")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("welcome_email_job_id", sa.Uuid(), nullable=True),
        sa.Column("welcome_email_sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )


def downgrade() -> None:
    refuse_unless_empty("users")
    op.drop_table("users")
