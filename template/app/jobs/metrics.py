"""Queue figures read from the jobs table at each scrape: the backlog by kind, and its age."""

import logging
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.core.database import get_sessionmaker, utcnow
from app.jobs.models import UNFINISHED, Job, JobStatus

logger = logging.getLogger(__name__)

# Kinds are registered names, so few; the bound only keeps a scrape cheap should that change.
MAX_KINDS = 500


class QueueCollector(Collector):
    """jobs_queued, jobs_running and jobs_oldest_queued_age_seconds, by kind.

    Counters of each process cannot say how many jobs wait now (a job queued by the API and
    finished by a worker is counted in two processes); the table can, in one grouped query
    over the indexed status column, which touches unfinished rows only.
    """

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            "jobs_queued", "Jobs waiting to run now, by kind", labels=["kind"]
        )
        running = GaugeMetricFamily("jobs_running", "Jobs running now, by kind", labels=["kind"])
        oldest = GaugeMetricFamily(
            "jobs_oldest_queued_age_seconds",
            "Age of the oldest job still waiting to run, by kind (0: none waits)",
            labels=["kind"],
        )
        try:
            rows = self.backlog()
        except Exception:
            # A scrape must still show the process's own figures with the database down.
            logger.warning("could not read the job backlog for /metrics", exc_info=True)
            return
        now = utcnow()
        for kind, status, count, first in rows:
            if status == JobStatus.QUEUED:
                queued.add_metric([kind], count)
                oldest.add_metric([kind], max(0.0, (now - first).total_seconds()))
            else:
                running.add_metric([kind], count)
        yield from (queued, running, oldest)

    @staticmethod
    def backlog() -> list[tuple[str, str, int, datetime]]:
        with get_sessionmaker()() as session:
            statement = (
                select(Job.kind, Job.status, func.count(), func.min(Job.created_at))
                .where(Job.status.in_(UNFINISHED))
                .group_by(Job.kind, Job.status)
                .limit(MAX_KINDS * len(UNFINISHED))
            )
            return [
                (kind, status, count, first)
                for kind, status, count, first in session.execute(statement)
            ]
