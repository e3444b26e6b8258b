"""The `items` table."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

from app.core.migrate import refuse_unless_empty

revision: str = "cache_updates_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("cache_updates",)
depends_on: str | Sequence[str] | None = "core_0001"


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made this table before migrations existed (start-up adopts it)."""
    return inspector.has_table("items")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    refuse_unless_empty("items")
    op.drop_table("items")
