"""Reads and writes of job rows; every write goes through the group-commit writer.

The one exception is a new job staged in a caller's transaction (`insert_job`, used by
`app.tasks.stage`): it commits together with the domain row that needs it.
"""

import asyncio
import base64
import binascii
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, false, insert, or_, select, update
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.database import get_engine, get_sessionmaker, utcnow
from app.core.writer import GroupCommitWriter
from app.jobs.models import RETRYABLE, UNFINISHED, Job, JobStatus
from app.jobs.schemas import JobRead

_jobs = cast(Table, Job.__table__)  # declared as a FromClause; a mapped class's is a Table
MAX_ERROR_LENGTH = 4000

# Built once: the writer runs writes that share a statement as one executemany; each
# write names its job as the row it touches, so jobs' writes can share one.
_INSERT = insert(_jobs)
# Spelled out instead of `in_`, which executemany cannot take.
_UNFINISHED = or_(*(_jobs.c.status == status for status in UNFINISHED))
# Job operations: conditional writes. An operator's cancel and a worker's start or outcome
# may race; each statement only moves a row from the states it names, so whichever comes
# second finds nothing to change: a cancelled job is never started nor overwritten.
# Returns the attempt's number within the current run (since the last operator retry).
# A `running` row whose lease is live (its process renews it) is not started again: a
# duplicate delivery of a job that another worker runs must not run beside it.
_START = (
    update(_jobs)
    .where(
        _jobs.c.id == bindparam("job_id"),
        or_(
            _jobs.c.status == JobStatus.QUEUED,
            and_(_jobs.c.status == JobStatus.RUNNING, _jobs.c.updated_at < bindparam("cutoff")),
        ),
    )
    .values(status=JobStatus.RUNNING, attempts=_jobs.c.attempts + 1, updated_at=bindparam("now"))
    .returning(_jobs.c.attempts - _jobs.c.attempt_base)
)
_SETTLE = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _UNFINISHED)
    .values(
        status=bindparam("new_status"),
        result=bindparam("new_result"),
        error=bindparam("new_error"),
        updated_at=bindparam("now"),
    )
)
_RETRY = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _jobs.c.status.in_(RETRYABLE))
    .values(
        status=JobStatus.QUEUED,
        attempt_base=_jobs.c.attempts,
        result=None,
        updated_at=bindparam("now"),
    )
    .returning(_jobs.c.id)
)
_CANCEL_QUEUED = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _jobs.c.status == JobStatus.QUEUED)
    .values(status=JobStatus.CANCELLED, updated_at=bindparam("now"))
    .returning(_jobs.c.id)
)
_CANCEL_UNFINISHED = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _UNFINISHED)
    .values(status=JobStatus.CANCELLED, updated_at=bindparam("now"))
    .returning(_jobs.c.id)
)
# A process holds a job's lease by keeping `updated_at` recent (no owner column: a lease
# outlives its holder by at most its length).
_RENEW = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _UNFINISHED)
    .values(updated_at=bindparam("now"))
)
# Renewing a lease that expired is taking the job over: the condition and the write are one
# statement, so of several processes claiming the job at once exactly one gets a row back.
# The row goes back to `queued` (its lease now the claimer's), so the claimer can start it.
_CLAIM = (
    _RENEW.where(_jobs.c.updated_at < bindparam("cutoff"))
    .values(status=JobStatus.QUEUED)
    .returning(_jobs.c.attempts)
)
# A Celery pool process died holding the job: the row goes back to `queued` so the
# redelivered message can start it at once. A death before the attempt started (handing
# the message to the pool) is counted as an attempt too, so poison ends either way.
# Returns the attempts made within the current run.
_LOST = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _UNFINISHED)
    .values(
        status=JobStatus.QUEUED,
        attempts=_jobs.c.attempts + case((_jobs.c.status == JobStatus.QUEUED, 1), else_=0),
        updated_at=bindparam("now"),
    )
    .returning(_jobs.c.attempts - _jobs.c.attempt_base)
)
# Changes no row, yet a database (or connection) that refuses writes refuses it: SQLite and
# PostgreSQL both check before they look for rows.
_PROBE = update(_jobs).where(false()).values(updated_at=_jobs.c.updated_at)


@dataclass(frozen=True)
class QueuedJob:
    """What a backend needs to run an existing job again."""

    id: uuid.UUID
    kind: str
    args: dict[str, Any]
    request_id: str | None
    trace_context: str | None  # a retry stays in the trace of the request that enqueued it


@dataclass(frozen=True)
class JobQuery:
    statuses: Sequence[JobStatus] = ()
    kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    cursor: tuple[datetime, uuid.UUID] | None = None
    limit: int = 50


@dataclass(frozen=True)
class JobPage:
    items: list[JobRead]
    next_cursor: str | None


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """Where a page ended, as an opaque token: base64url of `created_at|id`."""
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; ValueError for anything `encode_cursor` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, job_id = raw.partition("|")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment, uuid.UUID(job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor this service returned") from None


def new_job_row(
    kind: str, args: dict[str, Any], request_id: str | None, trace_context: str | None
) -> dict[str, Any]:
    """The values of a new `queued` job's row, under a fresh id.

    Its lease starts at creation (`updated_at`): a row nobody hands over or renews is
    abandoned once the lease runs out, and taken over like any other.
    """
    now = utcnow()
    return {
        "id": uuid.uuid4(),
        "kind": kind,
        "status": JobStatus.QUEUED,
        "args": args,
        "attempts": 0,
        "error": None,
        "result": None,
        "request_id": request_id,
        "trace_context": trace_context,
        "created_at": now,
        "updated_at": now,
    }


def insert_job(session: Session, row: dict[str, Any]) -> None:
    """Add a job row to the caller's transaction: it commits (or not) with the caller's rows."""
    session.execute(_INSERT, row)


class JobStore:
    """The only code that changes job rows, so both task backends record jobs alike."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.writer = writer

    async def create(
        self,
        kind: str,
        args: dict[str, Any],
        request_id: str | None,
        trace_context: str | None = None,
    ) -> uuid.UUID:
        """Insert a `queued` row and wait for its commit: the job exists before any work starts."""
        row = new_job_row(kind, args, request_id, trace_context)
        job_id: uuid.UUID = row["id"]
        await self.writer.write(_INSERT, row, key=job_id)
        return job_id

    async def start_attempt(self, job_id: uuid.UUID) -> int | None:
        """Mark the job `running` (one more attempt) and return the attempt's number.

        The number counts from the operator's last retry, if any. None: the job is no
        longer queued or running (cancelled, or finished by a duplicate delivery), so the
        work must not run; so is a job `running` under another process's live lease (a
        duplicate delivery). Awaited, so a cancel that came first always wins.
        """
        now = utcnow()
        lease = timedelta(seconds=get_settings().job_lease_seconds)
        params = {"job_id": job_id, "now": now, "cutoff": now - lease}
        attempt = await self.writer.write(_START, params, scalar=True, key=job_id)
        return None if attempt is None else int(attempt)

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

    async def retry(self, job_id: uuid.UUID) -> bool:
        """Put a `failed` or `cancelled` job back to `queued` with a fresh attempt budget.

        False: the job is in another state (or gone); nothing changed.
        """
        params = {"job_id": job_id, "now": utcnow()}
        return await self.writer.write(_RETRY, params, scalar=True, key=job_id) is not None

    async def cancel(self, job_id: uuid.UUID, *, running_too: bool) -> bool:
        """Mark a `queued` job (and a `running` one if `running_too`) `cancelled`.

        False: the job is in another state (or gone); nothing changed.
        """
        statement = _CANCEL_UNFINISHED if running_too else _CANCEL_QUEUED
        params = {"job_id": job_id, "now": utcnow()}
        return await self.writer.write(statement, params, scalar=True, key=job_id) is not None

    def queued(self, job_id: uuid.UUID) -> QueuedJob | None:
        with get_sessionmaker()() as session:
            job = session.get(Job, job_id)
            if job is None or job.status != JobStatus.QUEUED:
                return None
            return QueuedJob(job.id, job.kind, job.args, job.request_id, job.trace_context)

    def current_attempt(self, job_id: uuid.UUID) -> int:
        """The number of the job's latest attempt, counted from the operator's last retry."""
        with get_sessionmaker()() as session:
            job = session.get(Job, job_id)
            return job.attempts - job.attempt_base if job else 1

    def page(self, query: JobQuery) -> JobPage:
        """One page of jobs, newest first, after `query.cursor` (keyset pagination)."""
        statement = select(Job)
        if query.statuses:
            statement = statement.where(Job.status.in_(query.statuses))
        if query.kind is not None:
            statement = statement.where(Job.kind == query.kind)
        if query.created_after is not None:
            statement = statement.where(Job.created_at > query.created_after)
        if query.created_before is not None:
            statement = statement.where(Job.created_at < query.created_before)
        if query.cursor is not None:
            created_at, job_id = query.cursor
            # Written out rather than a row-value comparison: the same on every database,
            # and each index (status|kind, created_at, id) serves it.
            statement = statement.where(
                or_(
                    Job.created_at < created_at,
                    and_(Job.created_at == created_at, Job.id < job_id),
                )
            )
        statement = statement.order_by(Job.created_at.desc(), Job.id.desc()).limit(query.limit + 1)
        with get_sessionmaker()() as session:
            rows = list(session.scalars(statement))
        items = [JobRead.model_validate(job) for job in rows[: query.limit]]
        more = len(rows) > query.limit
        last = items[-1] if items else None
        return JobPage(items, encode_cursor(last.created_at, last.id) if more and last else None)

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

    async def lost(self, job_id: uuid.UUID) -> int | None:
        """Give back a job whose process died holding it; the attempts made in this run.

        None when the job is no longer unfinished (finished, cancelled, or gone).
        """
        params = {"job_id": job_id, "now": utcnow()}
        attempts = await self.writer.write(_LOST, params, scalar=True, key=job_id)
        return None if attempts is None else int(attempts)

    def abandoned(self, cutoff: datetime, queued_cutoff: datetime | None = None) -> list[Job]:
        """Jobs still `queued`/`running` whose lease ran out before `cutoff`: nobody holds them.

        `queued_cutoff`, when given, applies to `queued` rows instead: on Celery a queued
        job waits in the broker, and only one waiting far longer was never published.
        """
        queued_before = cutoff if queued_cutoff is None else queued_cutoff
        with get_sessionmaker()() as session:
            return list(
                session.scalars(
                    select(Job)
                    .where(
                        or_(
                            and_(Job.status == JobStatus.RUNNING, Job.updated_at < cutoff),
                            and_(Job.status == JobStatus.QUEUED, Job.updated_at < queued_before),
                        )
                    )
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
