"""Celery only: raw no-op tasks and markers, to price the job bookkeeping around each task."""

import time
from pathlib import Path

from app.worker import celery_app


@celery_app.task(name="bench.raw_noop")
def raw_noop() -> None:
    """A bare Celery task: no job row, no wrapper."""


@celery_app.task(name="bench.mark")
def mark(path: str) -> None:
    """Write the time it ran; a worker with prefetch 1 runs it after everything queued before."""
    Path(path).write_text(repr(time.time()))
