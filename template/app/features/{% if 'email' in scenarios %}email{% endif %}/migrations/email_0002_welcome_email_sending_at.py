"""`users.welcome_email_sending_at`: the claim taken before a welcome email goes out."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

from app.core.database import UtcDateTime
from app.core.migrate import refuse_unless_null

revision: str = "email_0002"
down_revision: str | None = "email_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made `users` with this column (main from 2026-12-01 on)."""
    columns = inspector.get_columns("users") if inspector.has_table("users") else []
    return any(column["name"] == "welcome_email_sending_at" for column in columns)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("welcome_email_sending_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    refuse_unless_null("users", "welcome_email_sending_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("welcome_email_sending_at")
