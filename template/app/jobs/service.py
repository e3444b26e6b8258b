"""Reads and writes of job rows; every write goes through the group-commit writer."""

import asyncio
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, false, insert, or_, select, update

from app.core.database import get_engine, get_sessionmaker, utcnow
from app.core.writer import GroupCommitWriter
from app.jobs.models import UNFINISHED, Job, JobStatus
from app.jobs.schemas import JobRead

_jobs = cast(Table, Job.__table__)  # declared as a FromClause; a mapped class's is a Table
MAX_ERROR_LENGTH = 4000

# Built once: the writer runs writes that share a statement as one executemany; each
# write names its job as the row it touches, so jobs' writes can share one.
_INSERT = insert(_jobs)
_START = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"))
    .values(status=JobStatus.RUNNING, attempts=_jobs.c.attempts + 1, updated_at=bindparam("now"))
)
_START_RETURNING = _START.returning(_jobs.c.attempts)
_SETTLE = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"))
    .values(
        status=bindparam("new_status"),
        result=bindparam("new_result"),
        error=bindparam("new_error"),
        updated_at=bindparam("now"),
    )
)
# A process holds a job's lease by keeping `updated_at` recent (no owner column: a lease
# outlives its holder by at most its length). Spelled out instead of `in_`, which
# executemany cannot take.
_UNFINISHED = or_(*(_jobs.c.status == status for status in UNFINISHED))
_RENEW = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _UNFINISHED)
    .values(updated_at=bindparam("now"))
)
# Renewing a lease that expired is taking the job over: the condition and the write are one
# statement, so of several processes claiming the job at once exactly one gets a row back.
_CLAIM = _RENEW.where(_jobs.c.updated_at < bindparam("cutoff")).returning(_jobs.c.attempts)
# Changes no row, yet a database (or connection) that refuses writes refuses it: SQLite and
# PostgreSQL both check before they look for rows.
_PROBE = update(_jobs).where(false()).values(updated_at=_jobs.c.updated_at)


class JobStore:
    """The only code that changes job rows, so both task backends record jobs alike."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.writer = writer

    async def create(self, kind: str, args: dict[str, Any], request_id: str | None) -> uuid.UUID:
        """Insert a `queued` row and wait for its commit: the job exists before any work starts."""
        job_id = uuid.uuid4()
        now = utcnow()
        row = {
            "id": job_id,
            "kind": kind,
            "status": JobStatus.QUEUED,
            "args": args,
            "attempts": 0,
            "error": None,
            "result": None,
            "request_id": request_id,
            "created_at": now,
            "updated_at": now,
        }
        await self.writer.write(_INSERT, row, key=job_id)
        return job_id

    async def start_attempt(self, job_id: uuid.UUID, attempt: int | None = None) -> int:
        """Mark the job `running` (one more attempt) and return the attempt's number.

        A backend that knows the number passes it: the write is queued without waiting
        (the row says `running` a moment later, always before the job's outcome). Otherwise
        the row says (RETURNING), and the write is awaited.
        """
        params = {"job_id": job_id, "now": utcnow()}
        if attempt is not None:
            self.writer.write_soon(_START, params, key=job_id)
            return attempt
        attempts = await self.writer.write(_START_RETURNING, params, scalar=True, key=job_id)
        if attempts is None:
            raise LookupError(f"job {job_id} does not exist")
        return int(attempts)

    async def succeed(self, job_id: uuid.UUID, result: Any) -> None:
        await self._settle(job_id, JobStatus.SUCCEEDED, result=result)

    async def retry_later(self, job_id: uuid.UUID, error: str) -> None:
        """Back to `queued`, keeping the error of the attempt that just failed."""
        await self._settle(job_id, JobStatus.QUEUED, error=error)

    async def fail(self, job_id: uuid.UUID, error: str) -> None:
        await self._settle(job_id, JobStatus.FAILED, error=error)

    async def _settle(
        self, job_id: uuid.UUID, status: JobStatus, result: Any = None, error: str | None = None
    ) -> None:
        params = {
            "job_id": job_id,
            "new_status": status,
            "new_result": result,
            "new_error": error[:MAX_ERROR_LENGTH] if error else None,
            "now": utcnow(),
        }
        await self.writer.write(_SETTLE, params, key=job_id)

    def get(self, job_id: uuid.UUID) -> JobRead | None:
        with get_sessionmaker()() as session:
            job = session.get(Job, job_id)
            return JobRead.model_validate(job) if job else None

    async def renew(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Keep the leases of unfinished jobs this process holds (one executemany for all)."""
        now = utcnow()
        await asyncio.gather(
            *(
                self.writer.write(_RENEW, {"job_id": job_id, "now": now}, key=job_id)
                for job_id in job_ids
            )
        )

    async def claim(self, job_id: uuid.UUID, cutoff: datetime) -> int | None:
        """Take over a job whose lease ran out before `cutoff`; returns its attempts so far.

        None when the job finished, or another process renewed or claimed it first.
        """
        params = {"job_id": job_id, "cutoff": cutoff, "now": utcnow()}
        attempts: int | None = await self.writer.write(_CLAIM, params, scalar=True, key=job_id)
        return attempts

    def abandoned(self, cutoff: datetime) -> list[Job]:
        """Jobs still `queued`/`running` whose lease ran out before `cutoff`: nobody holds them."""
        with get_sessionmaker()() as session:
            return list(
                session.scalars(
                    select(Job)
                    .where(Job.status.in_(UNFINISHED), Job.updated_at < cutoff)
                    .order_by(Job.created_at)
                )
            )

    async def writes_commit(self) -> bool:
        """Whether a write through the writer commits (bound the wait with `asyncio.timeout`).

        It takes the path job rows take: the writer thread, its transaction, the database.
        A failure tries once more, on the fresh connection that replaced a read-only one.
        """
        for _ in range(2):
            try:
                await self.writer.write(_PROBE, {})
                return True
            except Exception:  # any failure to write is the answer, not an error
                continue
        return False

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
