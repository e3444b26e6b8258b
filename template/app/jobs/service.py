"""Reads and writes of job rows; every write goes through the group-commit writer."""

import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, insert, select, update

from app.core.database import get_engine, get_sessionmaker
from app.core.writer import GroupCommitWriter
from app.jobs.models import UNFINISHED, Job, JobStatus
from app.jobs.schemas import JobRead

_jobs = Job.__table__
MAX_ERROR_LENGTH = 4000


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """The only code that changes job rows, so both task backends record jobs alike."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.writer = writer

    async def create(self, kind: str, args: dict[str, Any], request_id: str | None) -> uuid.UUID:
        """Insert a `queued` row and wait for its commit: the job exists before any work starts."""
        job_id = uuid.uuid4()
        now = utcnow()
        values = {
            "id": job_id,
            "kind": kind,
            "status": JobStatus.QUEUED,
            "args": args,
            "attempts": 0,
            "request_id": request_id,
            "created_at": now,
            "updated_at": now,
        }
        await self.writer.run(lambda conn: conn.execute(insert(_jobs).values(**values)))
        return job_id

    async def start_attempt(self, job_id: uuid.UUID) -> int:
        """Mark the job `running` and return its attempt number (1 for the first run)."""

        def op(conn: Connection) -> int:
            attempts = conn.execute(
                update(_jobs)
                .where(_jobs.c.id == job_id)
                .values(
                    status=JobStatus.RUNNING,
                    attempts=_jobs.c.attempts + 1,
                    updated_at=utcnow(),
                )
                .returning(_jobs.c.attempts)
            ).scalar_one_or_none()
            if attempts is None:
                raise LookupError(f"job {job_id} does not exist")
            return attempts

        return await self.writer.run(op)

    async def succeed(self, job_id: uuid.UUID, result: Any) -> None:
        await self._set(job_id, status=JobStatus.SUCCEEDED, result=result, error=None)

    async def retry_later(self, job_id: uuid.UUID, error: str) -> None:
        """Back to `queued`, keeping the error of the attempt that just failed."""
        await self._set(job_id, status=JobStatus.QUEUED, error=error[:MAX_ERROR_LENGTH])

    async def fail(self, job_id: uuid.UUID, error: str) -> None:
        await self._set(job_id, status=JobStatus.FAILED, error=error[:MAX_ERROR_LENGTH])

    async def _set(self, job_id: uuid.UUID, **values: Any) -> None:
        stmt = update(_jobs).where(_jobs.c.id == job_id).values(updated_at=utcnow(), **values)
        await self.writer.run(lambda conn: conn.execute(stmt))

    def get(self, job_id: uuid.UUID) -> JobRead | None:
        with get_sessionmaker()() as session:
            job = session.get(Job, job_id)
            return JobRead.model_validate(job) if job else None

    def unfinished_before(self, moment: datetime) -> list[Job]:
        """Jobs still `queued`/`running` that nobody touched since `moment` (left by a crash)."""
        with get_sessionmaker()() as session:
            return list(
                session.scalars(
                    select(Job)
                    .where(Job.status.in_(UNFINISHED), Job.updated_at < moment)
                    .order_by(Job.created_at)
                )
            )

    def close(self) -> None:
        self.writer.close()


@lru_cache
def get_job_store() -> JobStore:
    return JobStore(GroupCommitWriter(get_engine()))


def reset_job_store() -> None:
    """Stop the writer and forget the store (shutdown, after a fork, or between tests)."""
    if get_job_store.cache_info().currsize:
        get_job_store().close()
    get_job_store.cache_clear()
