"""Task backend on FastAPI's BackgroundTasks: work runs in the API process after the response."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Annotated, Any, NamedTuple

from fastapi import BackgroundTasks, Depends, Request

from app.core.config import get_settings
from app.core.database import utcnow
from app.core.logging import request_id_var
from app.jobs.service import get_job_store
from app.tasks.interface import Task, TaskQueue
from app.tasks.runner import run_attempt

logger = logging.getLogger(__name__)

# Work runs inside the API process, so it shares the API's memory (e.g. an in-process cache).
RUNS_IN_API_PROCESS = True


class Work(NamedTuple):
    """A job as this process runs it: `run_attempt`'s arguments, in its order."""

    name: str
    job_id: uuid.UUID
    kwargs: dict[str, Any]
    request_id: str | None


async def execute(work: Work, previous_attempts: int = 0) -> None:
    """Run a job to its end: retries wait on the event loop, never in a thread."""
    # This process holds the job's lease, so no other runs it: it counts the attempts itself.
    attempt = previous_attempts + 1
    outcome = await run_attempt(*work, attempt)
    while outcome.status == "retry":
        await asyncio.sleep(outcome.delay)
        attempt += 1
        outcome = await run_attempt(*work, attempt)


class Runner:
    """The jobs this process holds: each runs as its own asyncio task, under a lease.

    Several processes may share the database (`uvicorn --workers`, replicas, a rolling
    deploy), so a job is run by the process holding its lease: that process keeps the row's
    `updated_at` recent from hand-over until the job ends, retry delays included. A row left
    unfinished and not renewed for `JOB_LEASE_SECONDS` has lost its process; one process
    claims it and runs it again. One runner per running app, handed to requests as
    `request.state.job_runner` by `backend_lifespan`.
    """

    def __init__(self, lease_seconds: float) -> None:
        self._lease = timedelta(seconds=lease_seconds)
        self._held: set[uuid.UUID] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def hold(self, job_id: uuid.UUID) -> None:
        """Keep a job's lease from its hand-over to a response, before the work starts."""
        self._held.add(job_id)

    def spawn(self, work: Work, previous_attempts: int = 0) -> None:
        self._held.add(work.job_id)
        running = asyncio.get_running_loop().create_task(self._run(work, previous_attempts))
        self._tasks.add(running)
        running.add_done_callback(self._tasks.discard)

    async def start(self, work: Work) -> None:
        """Start the job as its own task, so it runs outside the request's middleware stack.

        Awaited by the response instead, it would hold the request open until the work ends:
        request timings (the logging scenario's latency) would include the work.
        """
        self.spawn(work)

    async def _run(self, work: Work, previous_attempts: int) -> None:
        try:
            await execute(work, previous_attempts)
        finally:
            self._held.discard(work.job_id)

    async def renew_leases(self) -> None:
        await get_job_store().renew(list(self._held))

    async def take_over_abandoned(self) -> None:
        """Run the jobs whose lease ran out: left by a crash, or cancelled by a shutdown."""
        store = get_job_store()
        cutoff = utcnow() - self._lease
        found = await asyncio.to_thread(store.abandoned, cutoff)
        found = [job for job in found if job.id not in self._held]
        claims = await asyncio.gather(*(store.claim(job.id, cutoff) for job in found))
        for job, attempts in zip(found, claims, strict=True):
            if attempts is None:
                continue  # another process was first
            logger.info(
                "taking over job left %s by a process that stopped",
                job.status,
                extra={"job_id": str(job.id)},
            )
            self.spawn(Work(job.kind, job.id, job.args, job.request_id), attempts)

    async def drain(self, grace: float) -> None:
        """Give running jobs `grace` seconds to finish; the rest keep their lease until it runs out."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for leftover in pending:
            leftover.cancel()
        if pending:
            logger.warning(
                "shutdown cancelled %d unfinished job(s); once their lease runs out, "
                "another process or the next start-up takes them over",
                len(pending),
            )


class BackgroundTaskQueue:
    """Writes the job row, then has this response's background tasks start the work."""

    def __init__(self, runner: Runner, background_tasks: BackgroundTasks) -> None:
        self._runner = runner
        self._background_tasks = background_tasks
        self._handed_over: list[Work] = []

    async def enqueue(self, task: Task, /, **kwargs: Any) -> uuid.UUID:
        task.check_arguments(kwargs)
        request_id = request_id_var.get()
        job_id = await get_job_store().create(task.name, kwargs, request_id)
        work = Work(task.name, job_id, kwargs, request_id)
        self._runner.hold(job_id)
        self._handed_over.append(work)
        self._background_tasks.add_task(self._runner.start, work)
        return job_id

    def run_without_response(self) -> None:
        """Starlette drops a response's background tasks when the endpoint raises; run them anyway."""
        for work in self._handed_over:
            self._runner.spawn(work)


async def get_task_queue(
    request: Request, background_tasks: BackgroundTasks
) -> AsyncIterator[TaskQueue]:
    queue = BackgroundTaskQueue(request.state.job_runner, background_tasks)
    try:
        yield queue
    except Exception:
        # The rows are committed, so the work is owed even though the request failed.
        queue.run_without_response()
        raise


TaskQueueDep = Annotated[TaskQueue, Depends(get_task_queue)]


async def check_backend() -> dict[str, str]:
    return {}  # the work runs in this process: healthy whenever the API answers


async def every(seconds: float, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` every `seconds` until cancelled; one that fails is tried again next time."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await action()
        except Exception:
            logger.exception("%s failed; trying again in %.1fs", action.__name__, seconds)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


@asynccontextmanager
async def backend_lifespan() -> AsyncIterator[dict[str, Runner]]:
    """Take over jobs nobody holds, keep this process's leases, give running jobs a grace period."""
    settings = get_settings()
    runner = Runner(settings.job_lease_seconds)
    await runner.take_over_abandoned()
    # Renewed three times per lease, a lease outlives two renewals missed (a busy database).
    # Sweeping as often takes over a crashed sibling's jobs without waiting for a restart.
    beat = settings.job_lease_seconds / 3
    renewing = asyncio.create_task(every(beat, runner.renew_leases))
    sweeping = asyncio.create_task(every(beat, runner.take_over_abandoned))
    try:
        yield {"job_runner": runner}
    finally:
        await stop(sweeping)  # a process on its way out takes on no more work
        await runner.drain(settings.shutdown_grace_seconds)
        await stop(renewing)  # what drain cancelled keeps its lease until it runs out
