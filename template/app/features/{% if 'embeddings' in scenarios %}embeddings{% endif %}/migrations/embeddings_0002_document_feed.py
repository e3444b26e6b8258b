"""`documents.feed_position` and `document_feed`: the change feed search indexes follow."""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

revision: str = "embeddings_0002"
down_revision: str | None = "embeddings_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made this table too."""
    return inspector.has_table("document_feed")


def upgrade() -> None:
    # Documents stored before this revision sit at position 0: an index built from the
    # database reads every ready document anyway, whatever its position. Both statements
    # are plain ALTER TABLEs on SQLite too: a batch that copied `documents` into a new table
    # would drop the old one, and with foreign keys on that deletes every chunk (cascade).
    op.add_column(
        "documents",
        sa.Column("feed_position", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_documents_feed_position", "documents", ["feed_position"])
    document_feed = op.create_table(
        "document_feed",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(document_feed, [{"id": 1, "position": 0, "epoch": uuid.uuid4().hex}])


def downgrade() -> None:
    # Positions only order changes for search indexes, which rebuild from the documents
    # themselves: nothing is lost by dropping them.
    op.drop_table("document_feed")
    op.drop_index("ix_documents_feed_position", "documents")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch copy: see upgrade().
    op.drop_column("documents", "feed_position")
