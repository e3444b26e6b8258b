"""The `jobs` and `job_schedules` tables."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, UtcDateTime


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# What an operator may run again.
RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # GET /jobs pages newest first by (created_at, id), filtered by status or kind: each
        # filter has an index that serves its order, so a page costs the same on any table.
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_status_created_at_id", "status", "created_at", "id"),
        Index("ix_jobs_kind_created_at_id", "kind", "created_at", "id"),
        # Lease sweeps (unfinished and stale) and retention (finished and old).
        Index("ix_jobs_status_updated_at", "status", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(200))
    # No index of its own: the (status, ...) indexes above serve `WHERE status = ...`, and
    # each index is one more write at every status change.
    status: Mapped[str] = mapped_column(String(16))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(default=0)
    # `attempts` when an operator last retried the job: the attempts since then are the
    # ones its retry budget counts, while `attempts` keeps the whole history.
    attempt_base: Mapped[int] = mapped_column(default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(128))
    # The W3C `traceparent` of the request that enqueued the job (tracing on): each attempt's
    # span joins that trace, wherever and however late it runs.
    trace_context: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class JobSchedule(Base):
    """When a periodic unit of work is next due (the BackgroundTasks backend's scheduler).

    Every API process reads these rows; the one whose conditional UPDATE moves
    `next_run_at` on fires the occurrence, so each fires once however many processes run.
    """

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UtcDateTime)
