"""Queue metrics, read from real job rows at scrape time."""

import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from app.core.database import get_sessionmaker, utcnow
from app.core.migrate import upgrade_to_heads
from app.jobs.metrics import QueueCollector
from app.jobs.models import Job


def add_job(kind: str, status: str, age_seconds: float) -> None:
    created = utcnow() - timedelta(seconds=age_seconds)
    with get_sessionmaker()() as session, session.begin():
        session.add(
            Job(
                id=uuid.uuid4(),
                kind=kind,
                status=status,
                args={},
                attempts=0,
                created_at=created,
                updated_at=created,
            )
        )


def scrape() -> dict[tuple[str, str], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector())
    return {
        (sample.name, sample.labels["kind"]): sample.value
        for metric in registry.collect()
        for sample in metric.samples
    }


def test_backlog_by_kind_and_oldest_age() -> None:
    upgrade_to_heads()
    add_job("mail.send", "queued", age_seconds=120)
    add_job("mail.send", "queued", age_seconds=5)
    add_job("mail.send", "running", age_seconds=300)
    add_job("docs.embed", "running", age_seconds=1)
    add_job("docs.embed", "succeeded", age_seconds=900)
    add_job("docs.embed", "failed", age_seconds=900)

    figures = scrape()

    assert figures[("jobs_queued", "mail.send")] == 2
    assert figures[("jobs_running", "mail.send")] == 1
    assert figures[("jobs_running", "docs.embed")] == 1
    assert ("jobs_queued", "docs.embed") not in figures  # finished jobs are no backlog
    assert 120 <= figures[("jobs_oldest_queued_age_seconds", "mail.send")] < 130


def test_backlog_drains_to_nothing(client: TestClient, wait_for_job: Any) -> None:
    job_ids = [
        client.post("/samples/sleep", json={"seconds": 2}).json()["job_id"] for _ in range(3)
    ]
    assert backlog(client.get("/metrics").text) == 3

    for job_id in job_ids:
        assert wait_for_job(job_id)["status"] == "succeeded"

    assert backlog(client.get("/metrics").text) == 0


def backlog(exposition: str) -> float:
    """Queued plus running `samples.sleep` jobs, as /metrics shows them."""
    return sum(
        float(line.rpartition(" ")[2])
        for line in exposition.splitlines()
        if line.startswith(
            ('jobs_queued{kind="samples.sleep"}', 'jobs_running{kind="samples.sleep"}')
        )
    )
