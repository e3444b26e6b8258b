"""Retention: a periodic job deletes finished jobs (and features' old records) in batches."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from prometheus_client import Counter
from sqlalchemy import ColumnElement, CursorResult, Table, delete, select, true

from app.core.config import get_settings
from app.core.database import session_scope, utcnow
from app.jobs.models import Job, JobStatus
from app.tasks import Schedule, task

logger = logging.getLogger(__name__)

RETENTION_DELETED = Counter(
    "retention_deleted", "Rows deleted because they outlived their retention", ["table"]
)


@dataclass(frozen=True)
class Rule:
    """Rows of `table` whose `timestamp` is older than `retention()` (and match `where`) go."""

    table: Table
    timestamp: ColumnElement[Any]
    retention: Callable[[], timedelta]
    where: Callable[[], ColumnElement[bool]] = lambda: true()
    name: str = ""


_rules: list[Rule] = []


def keep_for(
    table: Any,
    timestamp: Any,
    retention: Callable[[], timedelta],
    where: Callable[[], ColumnElement[bool]] | None = None,
    name: str | None = None,
) -> None:
    """Have the retention job delete rows of `table` older than `retention()` (read each run).

    A feature calls this from its `tasks` module, which both the API and a worker import.
    """
    rule = Rule(cast(Table, table), timestamp, retention, where or true, name or table.name)
    _rules[:] = [known for known in _rules if known.name != rule.name] + [rule]


def purge(rule: Rule, batch: int) -> int:
    """Delete what `rule` says has expired, `batch` rows per transaction; returns the count.

    Small transactions keep each lock short, so requests and jobs writing meanwhile wait
    for one batch at most, never for the whole purge.
    """
    cutoff = utcnow() - rule.retention()
    key = next(iter(rule.table.primary_key.columns))
    deleted = 0
    while True:
        expired = (
            select(key).where(rule.timestamp < cutoff, rule.where()).order_by(key).limit(batch)
        )
        with session_scope() as session:
            result = session.execute(delete(rule.table).where(key.in_(expired)))
            count = int(cast(CursorResult[Any], result).rowcount)
        deleted += count
        RETENTION_DELETED.labels(rule.table.name).inc(count)
        if count < batch:
            return deleted


def _job_retention() -> timedelta:
    return get_settings().job_retention


def _failed_job_retention() -> timedelta:
    settings = get_settings()
    return settings.job_failed_retention or settings.job_retention


# Finished jobs, by when they finished; failed ones may be kept longer (JOB_FAILED_RETENTION).
keep_for(
    Job.__table__,
    Job.updated_at,
    _job_retention,
    lambda: Job.status.in_((JobStatus.SUCCEEDED, JobStatus.CANCELLED)),
    name="jobs",
)
keep_for(
    Job.__table__,
    Job.updated_at,
    _failed_job_retention,
    lambda: Job.status == JobStatus.FAILED,
    name="jobs.failed",
)


@task("jobs.retention", schedule=lambda: Schedule(every=get_settings().retention_every))
def purge_expired() -> dict[str, int]:
    """Every RETENTION_EVERY: apply every retention rule; the job's result counts the rows."""
    batch = get_settings().retention_batch
    counts = {rule.name: purge(rule, batch) for rule in list(_rules)}
    logger.info("retention purged expired rows", extra={"deleted": counts})
    return counts
