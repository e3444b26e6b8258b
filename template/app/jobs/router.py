"""`/jobs`: read any job (client scope); list, retry and cancel jobs, see schedules (ops scope)."""

import asyncio
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from app.core.pagination import PagePosition
from app.core.security import ClientScope, OpsScope
from app.jobs.models import RETRYABLE, JobStatus
from app.jobs.schedules import planned
from app.jobs.schemas import JobList, JobRead, ScheduleList, ScheduleRead
from app.jobs.service import JobQuery, get_job_store
from app.tasks import TaskQueueDep
from app.tasks.interface import find_task, periodic_tasks

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[ClientScope])
MAX_PAGE = 200


def not_found(job_id: uuid.UUID) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Job {job_id} not found")


def conflict(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=detail)


@router.get("", response_model=JobList, dependencies=[OpsScope])
async def list_jobs(
    status_: Annotated[
        list[JobStatus] | None, Query(alias="status", description="Repeat for several")
    ] = None,
    kind: Annotated[str | None, Query(max_length=200)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    position: PagePosition = None,
) -> JobList:
    """Jobs, newest first, a page at a time: pass each page's `next_cursor` for the next."""
    for moment, name in ((created_after, "created_after"), (created_before, "created_before")):
        if moment is not None and moment.tzinfo is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"{name} needs a time zone, e.g. 2026-01-31T12:00:00Z",
            )
    query = JobQuery(
        statuses=tuple(status_ or ()),
        kind=kind,
        created_after=created_after,
        created_before=created_before,
        cursor=position,
        limit=limit,
    )
    page = await asyncio.to_thread(get_job_store().page, query)
    return JobList(items=page.items, next_cursor=page.next_cursor)


@router.get("/schedules", response_model=ScheduleList, dependencies=[OpsScope])
async def list_schedules() -> ScheduleList:
    """What runs periodically, and (BackgroundTasks backend) when each runs next."""
    next_runs = await asyncio.to_thread(planned)
    return ScheduleList(
        items=[
            ScheduleRead(
                kind=unit.name, schedule=str(unit.schedule), next_run_at=next_runs.get(unit.name)
            )
            for unit in periodic_tasks()
        ]
    )


@router.get("/{job_id}", response_model=JobRead, responses={404: {"description": "Unknown job"}})
def read_job(job_id: uuid.UUID) -> JobRead:
    job = get_job_store().get(job_id)
    if job is None:
        raise not_found(job_id)
    return job


@router.post(
    "/{job_id}/retry",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[OpsScope],
    responses={404: {"description": "Unknown job"}, 409: {"description": "Not failed"}},
)
async def retry_job(job_id: uuid.UUID, queue: TaskQueueDep) -> JobRead:
    """Run a `failed` or `cancelled` job again, under the same id; its attempts so far stay."""
    store = get_job_store()
    job = await asyncio.to_thread(store.get, job_id)
    if job is None:
        raise not_found(job_id)
    if find_task(job.kind) is None:
        raise conflict(
            f"Job {job_id} cannot be retried: no unit of work is registered as {job.kind!r} "
            "(it was removed or renamed)"
        )
    if not await store.retry(job_id):  # conditional: of two retries at once, one wins
        current = await asyncio.to_thread(store.get, job_id)
        state = current.status if current else "gone"
        allowed = " or ".join(RETRYABLE)
        raise conflict(f"Job {job_id} is {state}: only a {allowed} job can be retried")
    queued = await asyncio.to_thread(store.queued, job_id)
    if queued is not None:  # else a cancel came in between: nothing to run
        await queue.submit(queued)
    current = await asyncio.to_thread(store.get, job_id)
    assert current is not None
    return current


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    dependencies=[OpsScope],
    responses={404: {"description": "Unknown job"}, 409: {"description": "Cannot be cancelled"}},
)
async def cancel_job(job_id: uuid.UUID, queue: TaskQueueDep) -> JobRead:
    """Cancel a `queued` job, or a `running` one whose unit of work is cancellable."""
    store = get_job_store()
    job = await asyncio.to_thread(store.get, job_id)
    if job is None:
        raise not_found(job_id)
    unit = find_task(job.kind)
    cancellable = unit is not None and unit.cancellable
    if not await store.cancel(job_id, running_too=cancellable):
        current = await asyncio.to_thread(store.get, job_id)
        state = current.status if current else "gone"
        if state == JobStatus.RUNNING:
            raise conflict(
                f"Job {job_id} is running and its unit of work {job.kind!r} is not "
                "cancellable (declare it with @task(cancellable=True) and call "
                "raise_if_cancelled() between steps)"
            )
        raise conflict(f"Job {job_id} is {state}: only a queued or running job can be cancelled")
    await queue.revoke(job_id)
    cancelled = await asyncio.to_thread(store.get, job_id)
    assert cancelled is not None
    return cancelled
