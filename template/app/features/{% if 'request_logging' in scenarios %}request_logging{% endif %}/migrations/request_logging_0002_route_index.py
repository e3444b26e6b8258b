"""One index by route, method and time (for /logs/stats) instead of the index by route alone."""

from collections.abc import Sequence

from alembic import op
from sqlalchemy.engine import Inspector

revision: str = "request_logging_0002"
down_revision: str | None = "request_logging_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_INDEX = "ix_request_records_route_method_created_at"


def matches_create_all(inspector: Inspector) -> bool:
    """`create_all` made `request_records` with this index (main from 2026-12-01 on)."""
    if not inspector.has_table("request_records"):
        return False
    return any(index["name"] == NEW_INDEX for index in inspector.get_indexes("request_records"))


def upgrade() -> None:
    op.create_index(NEW_INDEX, "request_records", ["route", "method", "created_at"])
    # Tables create_all made before 2026-12-01 have it; the new index's prefix serves its reads.
    op.drop_index("ix_request_records_route", table_name="request_records", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_request_records_route", "request_records", ["route"])
    op.drop_index(NEW_INDEX, table_name="request_records")
