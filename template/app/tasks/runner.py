"""The shared job wrapper: runs one attempt of a unit of work and records it on the job row."""

import asyncio
import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from app.core.error_reporting import report_job_failure
from app.core.logging import log_context
from app.core.metrics import JOB_DURATION, JOBS
from app.core.tracing import annotate_attempt, job_span, mark_failed
from app.jobs.service import get_job_store
from app.tasks.interface import (
    JobCancelled,
    PermanentError,
    RetryLater,
    Task,
    backoff_seconds,
    get_task,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the backend must do next: nothing, or run the job again after `delay` seconds."""

    status: Literal["succeeded", "failed", "retry", "cancelled"]
    delay: float = 0.0
    error: str | None = None  # why the attempt failed, when it did


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


async def fail(
    name: str, job_id: uuid.UUID, error: str, exc: BaseException | None = None
) -> Outcome:
    """Record the job as failed for good (no more attempts); log the traceback if any."""
    await get_job_store().fail(job_id, error)
    JOBS.labels(name, "failed").inc()
    logger.error("job failed: %s", error, exc_info=exc, extra={"kind": name})
    report_job_failure(name, job_id, error, exc)
    return Outcome("failed", error=error)


async def attempt_failed(
    task: Task, job_id: uuid.UUID, attempt: int, error: str, exc: BaseException | None = None
) -> Outcome:
    """Retry after a backoff while attempts remain, unless the error is permanent; else fail."""
    if isinstance(exc, PermanentError) or attempt >= task.attempts_allowed:
        return await fail(task.name, job_id, error, exc)
    delay = backoff_seconds(attempt)
    if isinstance(exc, RetryLater):
        delay = max(delay, exc.delay)  # what the remote side asked for, bounded by the unit
    await get_job_store().retry_later(job_id, error)
    JOBS.labels(task.name, "retried").inc()
    logger.warning(
        "job attempt failed, retrying in %.2fs: %s",
        delay,
        error,
        extra={"kind": task.name, "attempt": attempt},
    )
    return Outcome("retry", delay, error)


async def record_interrupted(
    name: str, job_id: uuid.UUID, request_id: str | None, error: str
) -> Outcome:
    """Record an attempt the backend stopped from outside (a time limit) as a failed attempt.

    The row tells which attempt it was: the backend saw the work stop, not its outcome.
    """
    with log_context(request_id=request_id, job_id=str(job_id)):
        attempt = await asyncio.to_thread(get_job_store().current_attempt, job_id)
        return await attempt_failed(get_task(name), job_id, attempt, error)


async def run_attempt(
    name: str,
    job_id: uuid.UUID,
    kwargs: dict[str, Any],
    request_id: str | None,
    *,
    sync_in_thread: bool = True,
    trace_context: str | None = None,
) -> Outcome:
    """Run the unit of work once. Both backends call this; only how they wait differs.

    The job row numbers the attempt (a message redelivered after its worker died looks
    like a first try to the backend), and refuses to start a job that was cancelled.
    `sync_in_thread=False` runs a sync unit on the caller's thread (`Task.run_here`): for an
    event loop that serves this one job, where a time limit can then interrupt the work.
    `trace_context` is the job's stored `traceparent`: the attempt is a span in that trace.
    """
    with job_span(name, str(job_id), trace_context) as span:
        outcome = await _run_attempt(name, job_id, kwargs, request_id, sync_in_thread)
        if outcome.error is not None:
            mark_failed(span, outcome.error)
        return outcome


async def _run_attempt(
    name: str,
    job_id: uuid.UUID,
    kwargs: dict[str, Any],
    request_id: str | None,
    sync_in_thread: bool,
) -> Outcome:
    store = get_job_store()
    with log_context(request_id=request_id, job_id=str(job_id)):
        try:
            task = get_task(name)
        except PermanentError as exc:
            return await fail(name, job_id, describe(exc))
        # --- job operations: a cancelled job never starts ---
        attempt = await store.start_attempt(job_id)
        if attempt is None:
            # Cancelled, finished, or running under another process's live lease (a
            # duplicate delivery, which must not run beside or after the one holding it).
            JOBS.labels(name, "skipped").inc()
            logger.info(
                "job skipped: it was cancelled, has finished or runs elsewhere",
                extra={"kind": name},
            )
            return Outcome("cancelled")
        # ---
        if attempt > task.attempts_allowed:
            # Delivered again after its process died mid-run, more often than allowed:
            # stop here rather than loop forever on work that keeps killing workers.
            return await fail(name, job_id, f"gave up after {attempt - 1} interrupted attempts")
        annotate_attempt(attempt)
        logger.info("job started", extra={"kind": name, "attempt": attempt})
        started = time.perf_counter()
        try:
            result = await (task(**kwargs) if sync_in_thread else task.run_here(**kwargs))
        # --- job operations: cancellable work stopped at its check; the row says cancelled ---
        except JobCancelled:
            JOB_DURATION.labels(name).observe(time.perf_counter() - started)
            JOBS.labels(name, "cancelled").inc()
            logger.info("job cancelled while running", extra={"kind": name, "attempt": attempt})
            return Outcome("cancelled")
        # ---
        except Exception as exc:
            JOB_DURATION.labels(name).observe(time.perf_counter() - started)
            return await attempt_failed(task, job_id, attempt, describe(exc), exc)
        JOB_DURATION.labels(name).observe(time.perf_counter() - started)
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return await fail(name, job_id, f"the result is not JSON-serialisable: {exc}")
        await store.succeed(job_id, result)
        JOBS.labels(name, "succeeded").inc()
        logger.info("job succeeded", extra={"kind": name, "attempt": attempt})
        return Outcome("succeeded")
