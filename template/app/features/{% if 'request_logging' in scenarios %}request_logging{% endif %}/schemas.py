"""Request and response bodies of the conversation and log-analysis endpoints."""

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.core.validation import StorableStr
from app.features.request_logging.config import get_request_log_settings

T = TypeVar("T")


def as_utc(moment: datetime) -> datetime:
    """The moment in UTC; a naive one (as SQLite returns them) is taken as UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-12:00 is in the year 10000 in UTC
        raise ValueError("out of range: in UTC it falls outside the years 1 to 9999") from None


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]

Role = Literal["user", "assistant", "system", "tool"]
# The content travels in the job's arguments (and a broker message): keep it bounded.
MAX_CONTENT_CHARS = 100_000


class Page(BaseModel, Generic[T]):
    """A page of a list: `items` plus where it sits in the whole."""

    items: list[T]
    total: int
    limit: int
    offset: int


class MessageCreate(BaseModel):
    # A misspelt field (say `metdata`) must fail loudly rather than vanish.
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: StorableStr = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    metadata: dict[str, Any] | None = None

    @field_validator("content")
    @classmethod
    def _not_blank(cls, content: str) -> str:
        if not content.strip():
            raise ValueError("content must not be blank")
        return content

    @field_validator("metadata")
    @classmethod
    def _storable(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        """Bounded, and only numbers JSON has: NaN or 1e400 would be stored as null."""
        if metadata is None:
            return None
        try:
            encoded = json.dumps(
                metadata, allow_nan=False, ensure_ascii=False, separators=(",", ":")
            )
        except ValueError:
            raise ValueError("metadata must not contain NaN or infinite numbers") from None
        size, limit = len(encoded.encode()), get_request_log_settings().max_metadata_bytes
        if size > limit:
            raise ValueError(f"metadata must be at most {limit} bytes as JSON, not {size}")
        return metadata


class MessageAccepted(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID


class MessageRead(BaseModel):
    id: uuid.UUID
    conversation_id: str
    role: Role
    content: str
    metadata: dict[str, Any] | None
    request_id: str | None
    created_at: UtcDatetime


class RequestRecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    request_id: str
    method: str
    route: str | None
    path: str
    status: int
    latency_ms: float
    client: str | None
    user_agent: str | None
    created_at: UtcDatetime


class RouteStats(BaseModel):
    """Latency and errors of one route (method + template); `route` is null for unmatched paths."""

    method: str
    route: str | None
    count: int
    errors: int = Field(description="responses with a 5xx status")
    error_rate: float = Field(description="errors / count")
    sampled: int = Field(description="the most recent requests the percentiles come from")
    p50_ms: float
    p95_ms: float
    p99_ms: float


class RequestStats(Page[RouteStats]):
    """A page of per-route stats, busiest route first."""

    window_seconds: int
    since: UtcDatetime
