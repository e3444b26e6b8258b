"""Task backend on FastAPI's BackgroundTasks: work runs in the API process after the response."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends

from app.core.config import get_settings
from app.core.database import utcnow
from app.core.logging import request_id_var
from app.jobs.service import get_job_store
from app.tasks.interface import Task, TaskQueue
from app.tasks.runner import run_attempt

logger = logging.getLogger(__name__)

# Work runs inside the API process, so it shares the API's memory (e.g. an in-process cache).
RUNS_IN_API_PROCESS = True


async def execute(
    name: str,
    job_id: uuid.UUID,
    kwargs: dict[str, Any],
    request_id: str | None,
    previous_attempts: int = 0,
) -> None:
    """Run a job to its end: retries wait on the event loop, never in a thread."""
    # Only this process runs the job, so it counts the attempts itself.
    attempt = previous_attempts + 1
    outcome = await run_attempt(name, job_id, kwargs, request_id, attempt)
    while outcome.status == "retry":
        await asyncio.sleep(outcome.delay)
        attempt += 1
        outcome = await run_attempt(name, job_id, kwargs, request_id, attempt)


class Runner:
    """Every job this process runs, each its own asyncio task, awaited at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        running = asyncio.get_running_loop().create_task(work)
        self._tasks.add(running)
        running.add_done_callback(self._tasks.discard)

    async def drain(self, grace: float) -> None:
        """Let running jobs finish within `grace` seconds; the rest resume at next start-up."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for leftover in pending:
            leftover.cancel()
        if pending:
            logger.warning(
                "shutdown cancelled %d unfinished job(s); they resume at start-up",
                len(pending),
            )


runner = Runner()


Job = tuple[str, uuid.UUID, dict[str, Any], str | None]  # name, id, arguments, request id


async def start(job: Job) -> None:
    """Start the job as its own task, so it runs outside the request's middleware stack.

    Awaited by the response instead, it would hold the request open until the work ends:
    request timings (the logging scenario's latency) would include the work.
    """
    runner.spawn(execute(*job))


class BackgroundTaskQueue:
    """Writes the job row, then has this response's background tasks start the work."""

    def __init__(self, background_tasks: BackgroundTasks) -> None:
        self._background_tasks = background_tasks
        self._handed_over: list[Job] = []

    async def enqueue(self, task: Task, /, **kwargs: Any) -> uuid.UUID:
        task.check_arguments(kwargs)
        request_id = request_id_var.get()
        job_id = await get_job_store().create(task.name, kwargs, request_id)
        job = (task.name, job_id, kwargs, request_id)
        self._handed_over.append(job)
        self._background_tasks.add_task(start, job)
        return job_id

    def run_without_response(self) -> None:
        """Starlette drops a response's background tasks when the endpoint raises; run them anyway."""
        for job in self._handed_over:
            runner.spawn(execute(*job))


async def get_task_queue(background_tasks: BackgroundTasks) -> AsyncIterator[TaskQueue]:
    queue = BackgroundTaskQueue(background_tasks)
    try:
        yield queue
    except Exception:
        # The rows are committed, so the work is owed even though the request failed.
        queue.run_without_response()
        raise


TaskQueueDep = Annotated[TaskQueue, Depends(get_task_queue)]


async def check_backend() -> dict[str, str]:
    return {}  # the work runs in this process: healthy whenever the API answers


@asynccontextmanager
async def backend_lifespan() -> AsyncIterator[None]:
    """Resume jobs a crash left unfinished; at shutdown give running ones a grace period."""
    started = utcnow()
    leftovers = await asyncio.to_thread(get_job_store().unfinished_before, started)
    for job in leftovers:
        logger.info(
            "resuming job left %s by a previous run",
            job.status,
            extra={"job_id": str(job.id)},
        )
        runner.spawn(execute(job.kind, job.id, job.args, job.request_id, job.attempts))
    try:
        yield
    finally:
        await runner.drain(get_settings().shutdown_grace_seconds)
