"""The task-queue interface every feature codes against, and the registry of units of work."""

import asyncio
import inspect
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi.concurrency import run_in_threadpool

from app.core.config import get_settings

JsonArgs = dict[str, Any]


class PermanentError(Exception):
    """Raise from a unit of work when retrying cannot help: the job fails at once."""


class QueueUnavailable(Exception):
    """The backend could not accept the work (e.g. the broker is down); the job is failed."""

    def __init__(self, reason: str, job_id: uuid.UUID) -> None:
        super().__init__(reason)
        self.job_id = job_id


@dataclass(frozen=True)
class Task:
    """A named unit of work. It takes ids and plain values, and opens its own resources."""

    name: str
    fn: Callable[..., Any]
    max_attempts: int | None = None
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
    def attempts_allowed(self) -> int:
        return self.max_attempts or get_settings().job_max_attempts

    def check_arguments(self, kwargs: JsonArgs) -> None:
        """Refuse, at enqueue time, arguments the function cannot take or JSON cannot carry."""
        self.signature.bind(**kwargs)
        json.dumps(kwargs, allow_nan=False)  # NaN is not JSON: PostgreSQL refuses the row


_registry: dict[str, Task] = {}


def task(name: str, *, max_attempts: int | None = None) -> Callable[[Callable[..., Any]], Task]:
    """Register a function as a unit of work under a stable `name` (stored on its jobs)."""

    def register(fn: Callable[..., Any]) -> Task:
        existing = _registry.get(name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"two units of work are named {name!r}")
        _registry[name] = Task(name=name, fn=fn, max_attempts=max_attempts)
        return _registry[name]

    return register


def get_task(name: str) -> Task:
    try:
        return _registry[name]
    except KeyError:
        raise PermanentError(f"no unit of work is registered as {name!r}") from None


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, so retries spread out."""
    settings = get_settings()
    ceiling = min(
        settings.job_retry_max_seconds,
        settings.job_retry_base_seconds * 2.0 ** (attempt - 1),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class TaskQueue(Protocol):
    """What a feature sees: hand over a named unit of work, get the id of its job back."""

    async def enqueue(self, task: Task, /, **kwargs: Any) -> uuid.UUID: ...


async def enqueue_or_undo(
    queue: TaskQueue, task: Task, undo: Callable[[], Any], /, **kwargs: Any
) -> uuid.UUID:
    """Enqueue the work; should that fail, run `undo` (sync) and re-raise.

    For work that completes what the request already committed (a new user's welcome
    email, a new document's processing): a refused job answers 503 "try again later", and
    the retry must find nothing half-done, or it meets a 409 or writes the row twice.
    """
    try:
        return await queue.enqueue(task, **kwargs)
    except Exception:
        await run_in_threadpool(undo)
        raise
