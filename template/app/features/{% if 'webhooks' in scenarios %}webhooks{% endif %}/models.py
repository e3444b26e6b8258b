"""The `webhook_endpoints` and `webhook_deliveries` tables: where events go, and each delivery."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, UtcDateTime


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # its job has not finished: queued, running, or waiting for a retry
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(500))
    # `whsec_` + base64 of the key: signing needs the key itself, so it is stored as it is
    # (as every webhook sender does); responses show it only at creation and rotation.
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool]
    disabled_reason: Mapped[str | None] = mapped_column(String(1000))
    consecutive_failures: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # Each endpoint's deliveries, newest first, a page at a time.
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    # The `webhook-id` header: the same on every attempt and on a replay, so a receiver can
    # tell a message it already handled.
    message_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int]
    response_status: Mapped[int | None]
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    job_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The exact bytes every attempt sends (signed as they are): last, as a long value.
    body: Mapped[str] = mapped_column(Text)
