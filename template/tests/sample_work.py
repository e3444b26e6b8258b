"""Units of work and routes that exist only for tests, driving the task plumbing end to end."""

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, get_args

from fastapi import APIRouter, FastAPI, HTTPException, status
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.core.database import session_scope
from app.core.logging import job_id_var
from app.core.rate_limit import RateLimit
from app.core.security import ClientScope
from app.jobs.schemas import JobRead
from app.jobs.service import QueuedJob, get_job_store
from app.main import create_app
from app.tasks import (
    PermanentError,
    QueueUnavailable,
    Schedule,
    Task,
    TaskQueueDep,
    raise_if_cancelled,
    stage,
    task,
)

logger = logging.getLogger("tests.sample_work")


class QueueDown:
    """A task queue that cannot take work, as the Celery backend is when its broker is down."""

    async def enqueue(self, task: Task, /, **kwargs: Any) -> uuid.UUID:
        raise QueueUnavailable("the task broker is unreachable", uuid.uuid4())

    async def dispatch(self, job: QueuedJob, /) -> None:
        """Leaves the committed row queued, as Celery's does with a dead broker."""

    async def submit(self, job: QueuedJob, /) -> None:
        raise QueueUnavailable("the task broker is unreachable", job.id)

    async def revoke(self, job_id: uuid.UUID, /) -> None:
        raise QueueUnavailable("the task broker is unreachable", job_id)


@contextmanager
def queue_down(client: TestClient) -> Iterator[None]:
    """Inside, every enqueue of the client's app fails as with a dead broker (a 503)."""
    app = client.app
    assert isinstance(app, FastAPI)
    get_task_queue = get_args(TaskQueueDep)[1].dependency  # Annotated[TaskQueue, Depends(...)]
    app.dependency_overrides[get_task_queue] = QueueDown
    try:
        yield
    finally:
        del app.dependency_overrides[get_task_queue]


def current_job() -> JobRead:
    """This job's row once it says `running` (the mark may still be on its way when work starts)."""
    deadline = time.monotonic() + 10
    while True:
        job = get_job_store().get(uuid.UUID(job_id_var.get()))
        assert job is not None
        if job.status != "queued" or time.monotonic() > deadline:
            return job
        time.sleep(0.005)


@task("samples.echo")
async def echo(value: str) -> dict[str, str]:
    """Succeeds, reporting the status its own job reached while it ran."""
    logger.info("echoing %s", value)
    status = (await asyncio.to_thread(current_job)).status
    return {"echo": value, "status_while_running": status}


@task("samples.flaky")
def flaky(failures: int) -> int:
    """Fails with a transient error on its first `failures` attempts (a sync unit of work)."""
    attempt = current_job().attempts
    if attempt <= failures:
        raise ConnectionError(f"transient failure on attempt {attempt}")
    return attempt


@task("samples.permanent")
async def permanent() -> None:
    raise PermanentError("this input can never succeed")


@task("samples.sleep")
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task("samples.block")
def block(seconds: float) -> float:
    """Sleeps in sync code."""
    time.sleep(seconds)
    return seconds


@task("samples.stubborn")
def stubborn(seconds: float) -> float:
    """Blocks for `seconds`, swallowing whatever is raised meanwhile (a time limit too)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            time.sleep(left)
        except Exception:
            logger.warning("stubborn ignores an exception and sleeps on")
    return seconds


@task("samples.fail_slowly")
async def fail_slowly(seconds: float) -> None:
    """Works for `seconds`, then fails with a transient error (so it is retried)."""
    await asyncio.sleep(seconds)
    raise ConnectionError("transient failure after a while")


@task("samples.cancellable", cancellable=True)
def cancellable(seconds: float) -> float:
    """Works in small steps for `seconds`, checking for a cancel between them."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        raise_if_cancelled()
        time.sleep(0.02)
    return seconds


def tick_schedule() -> Schedule:
    # Hourly, so it stays out of the way; tests of periodic jobs set SAMPLE_TICK_SECONDS.
    return Schedule(every=timedelta(seconds=float(os.environ.get("SAMPLE_TICK_SECONDS", "3600"))))


@task("samples.tick", schedule=tick_schedule)
def tick() -> str:
    """A periodic unit of work."""
    return "tick"


@task("samples.carry")
async def carry(value: Any) -> str:
    """Takes a JSON value of any shape: whatever the API accepts must reach the work."""
    return type(value).__name__


@task("samples.die")
def die() -> None:
    """Kills the process running it, as poison input once did to Celery's pool processes."""
    os.kill(os.getpid(), signal.SIGKILL)


@task("samples.refuse")
async def refuse(secret: str) -> None:
    """Fails for good; its argument stands for what a client sent (never reported)."""
    logger.info("refusing work of %d characters", len(secret))
    raise PermanentError("this input can never succeed")


class Enqueued(BaseModel):
    job_id: uuid.UUID
    status_at_enqueue: str


# Like any endpoint that creates work: a client key, and the rate limit.
router = APIRouter(prefix="/samples", dependencies=[ClientScope, RateLimit])
UNITS = {
    unit.name.removeprefix("samples."): unit
    for unit in (
        echo,
        flaky,
        permanent,
        refuse,
        sleep,
        block,
        stubborn,
        fail_slowly,
        carry,
        cancellable,
        die,
    )
}


@router.post("/{name}", status_code=status.HTTP_202_ACCEPTED)
async def enqueue_sample(name: str, kwargs: dict[str, Any], queue: TaskQueueDep) -> Enqueued:
    job_id = await queue.enqueue(UNITS[name], **kwargs)
    job = await asyncio.to_thread(get_job_store().get, job_id)
    assert job is not None
    return Enqueued(job_id=job_id, status_at_enqueue=job.status)


def stage_alone(unit: Task, kwargs: dict[str, Any]) -> QueuedJob:
    """Stage a job in a transaction of its own, as a feature stages one beside its row."""
    with session_scope() as session:
        return stage(session, unit, **kwargs)


@router.post("/{name}/staged", status_code=status.HTTP_202_ACCEPTED)
async def stage_sample(name: str, kwargs: dict[str, Any], queue: TaskQueueDep) -> Enqueued:
    """Commit the job's row first, then dispatch it (the outbox path features take)."""
    job = await asyncio.to_thread(stage_alone, UNITS[name], kwargs)
    await queue.dispatch(job)
    return Enqueued(job_id=job.id, status_at_enqueue="queued")


@router.post("/{name}/then-fail")
async def enqueue_then_fail(name: str, kwargs: dict[str, Any], queue: TaskQueueDep) -> None:
    job_id = await queue.enqueue(UNITS[name], **kwargs)
    raise HTTPException(status.HTTP_409_CONFLICT, detail={"job_id": str(job_id)})


def create_sample_app() -> FastAPI:
    """The real app plus the sample routes (also served by uvicorn in integration tests)."""
    app = create_app()
    app.include_router(router)
    return app
