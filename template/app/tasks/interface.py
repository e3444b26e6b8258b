"""The task-queue interface every feature codes against, and the registry of units of work."""

import asyncio
import inspect
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from croniter import croniter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.logging import job_id_var, request_id_var
from app.core.tracing import current_traceparent
from app.jobs.models import JobStatus
from app.jobs.service import QueuedJob, get_job_store, insert_job, new_job_row

JsonArgs = dict[str, Any]


class PermanentError(Exception):
    """Raise from a unit of work when retrying cannot help: the job fails at once."""


class RetryLater(Exception):
    """Raise when the next attempt should wait at least `delay` seconds (a `Retry-After`).

    Retried like any other failure while attempts remain, after the longer of `delay` and
    the usual backoff; the unit bounds `delay` itself, so a remote server cannot park a job.
    """

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class QueueUnavailable(Exception):
    """The backend could not accept the work (e.g. the broker is down); the job is failed."""

    def __init__(self, reason: str, job_id: uuid.UUID) -> None:
        super().__init__(reason)
        self.job_id = job_id


class JobCancelled(Exception):
    """Raised by `raise_if_cancelled()` inside cancellable work: the job ends `cancelled`."""


def raise_if_cancelled() -> None:
    """In a unit declared `cancellable=True`: stop here if an operator cancelled its job.

    Call it between steps (each chunk, each batch); it reads the job's row by primary key.
    Outside a job (a direct call in a test or a script) it does nothing.
    """
    job_id = job_id_var.get()
    if not job_id:
        return
    job = get_job_store().get(uuid.UUID(job_id))
    if job is not None and job.status == JobStatus.CANCELLED:
        raise JobCancelled(f"job {job_id} was cancelled")


@dataclass(frozen=True)
class Schedule:
    """When a periodic unit of work runs: `every=timedelta(...)` or `cron="*/5 * * * *"` (UTC)."""

    every: timedelta | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a Schedule takes exactly one of every= or cron=")
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError(f"Schedule(every={self.every}) must be a positive duration")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(
                f"Schedule(cron={self.cron!r}) is not a cron expression: write five fields, "
                "minute hour day-of-month month day-of-week, for example '*/15 * * * *'"
            )

    def first_run(self, now: datetime) -> datetime:
        """The first occurrence of a schedule seen for the first time at `now`."""
        if self.every is not None:
            return now + self.every
        return self._next_cron(now)

    def next_run(self, due: datetime, now: datetime) -> datetime:
        """The occurrence after `due`, which fires at `now`: the first one still ahead.

        Occurrences missed while nothing ran are skipped, so they fire once, not all at once.
        """
        if self.every is None:
            return self._next_cron(now)
        missed = (now - due) // self.every
        return due + self.every * (missed + 1)

    def _next_cron(self, after: datetime) -> datetime:
        assert self.cron is not None
        following: datetime = croniter(self.cron, after).get_next(datetime)
        return following

    def __str__(self) -> str:
        return f"every {self.every}" if self.every is not None else f"cron {self.cron}"


# A schedule, or a function giving it: for one that comes from settings, read at start-up.
ScheduleSpec = Schedule | Callable[[], Schedule]


@dataclass(frozen=True)
class Task:
    """A named unit of work. It takes ids and plain values, and opens its own resources."""

    name: str
    fn: Callable[..., Any]
    max_attempts: int | None = None
    # The work calls `raise_if_cancelled()`, so a running job of it can be cancelled.
    cancellable: bool = False
    schedule_spec: ScheduleSpec | None = None
    signature: inspect.Signature = field(init=False, repr=False, compare=False)
    is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Looked up once: enqueueing checks every call's arguments against them.
        object.__setattr__(self, "signature", inspect.signature(self.fn))
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))

    async def __call__(self, **kwargs: Any) -> Any:
        """Run the work once; sync functions go to a worker thread so the loop stays free."""
        if self.is_async:
            return await self.fn(**kwargs)
        return await run_in_threadpool(self.fn, **kwargs)

    async def run_here(self, **kwargs: Any) -> Any:
        """Run the work once on this thread, sync functions too: for a loop serving this job alone.

        A thread cannot be stopped, so work in one would outlive a time limit that ends its job.
        """
        if self.is_async:
            return await self.fn(**kwargs)
        await asyncio.sleep(0)  # what was handed to the loop so far (the `running` mark) goes first
        return self.fn(**kwargs)

    @property
    def schedule(self) -> Schedule | None:
        spec = self.schedule_spec
        return spec if spec is None or isinstance(spec, Schedule) else spec()

    @property
    def attempts_allowed(self) -> int:
        return self.max_attempts or get_settings().job_max_attempts

    def check_arguments(self, kwargs: JsonArgs) -> None:
        """Refuse, at enqueue time, arguments the function cannot take or JSON cannot carry."""
        self.signature.bind(**kwargs)
        json.dumps(kwargs, allow_nan=False)  # NaN is not JSON: PostgreSQL refuses the row


_registry: dict[str, Task] = {}


def task(
    name: str,
    *,
    max_attempts: int | None = None,
    cancellable: bool = False,
    schedule: ScheduleSpec | None = None,
) -> Callable[[Callable[..., Any]], Task]:
    """Register a function as a unit of work under a stable `name` (stored on its jobs).

    `cancellable=True`: the work calls `raise_if_cancelled()`, so a running job can be
    cancelled. `schedule=Schedule(...)`: the unit also runs periodically, each occurrence
    an ordinary job; it then takes no arguments.
    """

    def register(fn: Callable[..., Any]) -> Task:
        existing = _registry.get(name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"two units of work are named {name!r}")
        unit = Task(
            name=name,
            fn=fn,
            max_attempts=max_attempts,
            cancellable=cancellable,
            schedule_spec=schedule,
        )
        if schedule is not None:
            try:
                unit.signature.bind()
            except TypeError:
                raise ValueError(f"periodic unit {name!r} must take no arguments") from None
        _registry[name] = unit
        return unit

    return register


def get_task(name: str) -> Task:
    try:
        return _registry[name]
    except KeyError:
        raise PermanentError(f"no unit of work is registered as {name!r}") from None


def find_task(name: str) -> Task | None:
    return _registry.get(name)


def periodic_tasks() -> list[Task]:
    """Every registered unit that declares a schedule, by name."""
    return sorted((unit for unit in _registry.values() if unit.schedule_spec), key=lambda u: u.name)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, so retries spread out."""
    settings = get_settings()
    ceiling = min(
        settings.job_retry_max_seconds,
        settings.job_retry_base_seconds * 2.0 ** (attempt - 1),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def stage(session: Session, task: Task, /, **kwargs: Any) -> QueuedJob:
    """Add a `queued` job for `task` to the caller's transaction (a transactional outbox).

    For work a domain row needs (a new user's welcome email, a new document's processing):
    the row and its job commit together or not at all, so no crash can leave one without
    the other. Once the transaction committed, `await queue.dispatch(job)` hands it over.
    Checks the arguments as `enqueue` does, and carries the request id and trace along.
    """
    task.check_arguments(kwargs)
    request_id, trace_context = request_id_var.get(), current_traceparent()
    row = new_job_row(task.name, kwargs, request_id, trace_context)
    insert_job(session, row)
    return QueuedJob(row["id"], task.name, kwargs, request_id, trace_context)


class TaskQueue(Protocol):
    """What a feature sees: hand over a named unit of work, get the id of its job back."""

    async def enqueue(self, task: Task, /, **kwargs: Any) -> uuid.UUID: ...

    async def dispatch(self, job: QueuedJob, /) -> None:
        """Hand over a job whose row the caller's transaction committed (see `stage`).

        Never raises for the backend's sake: the row is durable, so work the backend cannot
        take now stays `queued` and is recovered (a lease sweep, or a worker's sweep that
        publishes rows left unpublished), and the answer can still name the job.
        """
        ...

    async def submit(self, job: QueuedJob, /) -> None:
        """Hand an existing `queued` job (an operator's retry) to the backend again."""
        ...

    async def revoke(self, job_id: uuid.UUID, /) -> None:
        """Tell the backend a job was cancelled, so it drops the work it still holds."""
        ...
