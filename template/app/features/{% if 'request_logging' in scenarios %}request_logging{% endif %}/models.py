"""The `request_records` and `conversation_messages` tables."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, UtcDateTime

# Column sizes; the middleware truncates to them so one odd request cannot fail a batch.
METHOD_LENGTH = 16
ROUTE_LENGTH = 512
PATH_LENGTH = 2048
CLIENT_LENGTH = 128
USER_AGENT_LENGTH = 512
ID_LENGTH = 128


class RequestRecord(Base):
    """One HTTP request as the service answered it."""

    __tablename__ = "request_records"
    # Filters by route, and each route's most recent requests for /logs/stats' percentiles.
    __table_args__ = (
        Index("ix_request_records_route_method_created_at", "route", "method", "created_at"),
    )

    # BIGINT on PostgreSQL (a log table grows fast); SQLite only auto-increments INTEGER keys.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    method: Mapped[str] = mapped_column(String(METHOD_LENGTH))
    # The route template ("/items/{id}"), or NULL when no route matched (a 404).
    route: Mapped[str | None] = mapped_column(String(ROUTE_LENGTH))
    path: Mapped[str] = mapped_column(String(PATH_LENGTH), index=True)
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    client: Mapped[str | None] = mapped_column(String(CLIENT_LENGTH))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ConversationMessage(Base):
    """One message of an AI-agent conversation, in the order the API accepted it."""

    __tablename__ = "conversation_messages"
    __table_args__ = (Index("ix_conversation_messages_order", "conversation_id", "created_at"),)

    # Generated when the request is accepted, so a re-run of the saving job upserts the same row.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # `metadata` is taken by SQLAlchemy on declarative classes; the column keeps the name.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
