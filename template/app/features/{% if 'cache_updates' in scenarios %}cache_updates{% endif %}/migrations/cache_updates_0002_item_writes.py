"""`item_writes`: the one-row count of writes to `items` that versions the cached stats."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError
from sqlalchemy.engine import Inspector

revision: str = "cache_updates_0002"
down_revision: str | None = "cache_updates_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made this table too (main from 2026-12-01 on)."""
    return inspector.has_table("item_writes")


def upgrade() -> None:
    item_writes = op.create_table(
        "item_writes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The row exists from the table's creation on, so a write only ever has to increment it.
    op.bulk_insert(item_writes, [{"id": 1, "total": 0}])


def downgrade() -> None:
    # Cached stats carry this count as their version: restarting it at 0 later would let
    # stale stats win over fresh ones, so only a count nothing has used yet may go.
    total = op.get_bind().scalar(sa.text("SELECT max(total) FROM item_writes"))
    if total:
        raise CommandError(
            f"refusing to drop table item_writes: it has counted {total} writes that cached "
            "stats are versioned by; drop it by hand (and flush the cache) if you mean it"
        )
    op.drop_table("item_writes")
