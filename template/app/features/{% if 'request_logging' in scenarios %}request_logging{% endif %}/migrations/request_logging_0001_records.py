"""The `request_records` and `conversation_messages` tables, as first shipped."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Inspector

from app.core.database import UtcDateTime
from app.core.migrate import refuse_unless_empty

revision: str = "request_logging_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("request_logging",)
depends_on: str | Sequence[str] | None = "core_0001"


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made these tables before migrations existed (start-up adopts them)."""
    return inspector.has_table("request_records")


def upgrade() -> None:
    op.create_table(
        "request_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("route", sa.String(length=512), nullable=True),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("client", sa.String(length=128), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_request_records_request_id", "request_records", ["request_id"])
    op.create_index("ix_request_records_route", "request_records", ["route"])
    op.create_index("ix_request_records_path", "request_records", ["path"])
    op.create_index("ix_request_records_created_at", "request_records", ["created_at"])
    op.create_table(
        "conversation_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_conversation_messages_order",
        "conversation_messages",
        ["conversation_id", "created_at"],
    )


def downgrade() -> None:
    refuse_unless_empty("request_records")
    refuse_unless_empty("conversation_messages")
    op.drop_table("conversation_messages")
    op.drop_table("request_records")
