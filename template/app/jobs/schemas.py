"""Job JSON as clients see it."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.jobs.models import JobStatus


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: JobStatus
    attempts: int
    error: str | None
    result: Any | None
    request_id: str | None
    created_at: datetime
    updated_at: datetime


class JobList(BaseModel):
    items: list[JobRead]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None


class ScheduleRead(BaseModel):
    kind: str
    schedule: str
    # BackgroundTasks backend: the next occurrence (null before its first start). Celery:
    # beat keeps its own schedule, so null.
    next_run_at: datetime | None


class ScheduleList(BaseModel):
    items: list[ScheduleRead]
