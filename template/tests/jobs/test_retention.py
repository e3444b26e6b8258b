"""The retention job deletes exactly the expired finished rows, in batches, as work goes on."""

import asyncio
import threading
import uuid
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from app.core.config import get_settings
from app.core.database import session_scope, utcnow
from app.jobs.models import Job, JobStatus
from app.jobs.retention import purge_expired
from app.jobs.service import get_job_store


def add_job(status: str, age: timedelta) -> uuid.UUID:
    moment = utcnow() - age
    job_id = uuid.uuid4()
    with session_scope() as session:
        session.add(
            Job(
                id=job_id,
                kind="samples.echo",
                status=status,
                args={},
                attempts=1,
                created_at=moment,
                updated_at=moment,
            )
        )
    return job_id


def remaining(ids: set[uuid.UUID]) -> set[uuid.UUID]:
    with session_scope() as session:
        return {job.id for job in session.query(Job).filter(Job.id.in_(ids))}


def deleted_metric() -> float:
    return REGISTRY.get_sample_value("retention_deleted_total", {"table": "jobs"}) or 0.0


def test_only_finished_jobs_older_than_the_retention_are_deleted_in_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "job_retention", timedelta(days=30))
    monkeypatch.setattr(settings, "retention_batch", 4)  # several batches, the last partial
    old, young = timedelta(days=31), timedelta(days=29)
    expired = {
        add_job(status, old) for status in ("succeeded", "failed", "cancelled") for _ in range(3)
    }
    kept = {add_job(status, old) for status in ("queued", "running")}  # unfinished: never
    kept |= {add_job(status, young) for status in ("succeeded", "failed", "cancelled")}
    before = deleted_metric()

    # New jobs keep being created while the purge runs: it must neither fail nor take them.
    stop = threading.Event()
    created: list[uuid.UUID] = []

    def keep_creating() -> None:
        while not stop.is_set():
            created.append(asyncio.run(get_job_store().create("samples.echo", {}, None)))

    writer = threading.Thread(target=keep_creating)
    writer.start()
    try:
        counts = purge_expired.fn()
    finally:
        stop.set()
        writer.join()

    assert remaining(expired) == set()
    assert remaining(kept) == kept
    assert remaining(set(created)) == set(created) and created
    assert counts["jobs"] + counts["jobs.failed"] == 9
    assert deleted_metric() - before == 9


def test_failed_jobs_can_be_kept_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "job_retention", timedelta(days=1))
    monkeypatch.setattr(settings, "job_failed_retention", timedelta(days=90))
    succeeded = add_job(JobStatus.SUCCEEDED, timedelta(days=2))
    failed = add_job(JobStatus.FAILED, timedelta(days=2))

    purge_expired.fn()

    assert remaining({succeeded, failed}) == {failed}


def test_retention_is_a_periodic_job_every_retention_every(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "retention_every", timedelta(minutes=5))

    assert purge_expired.schedule is not None
    assert purge_expired.schedule.every == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("value", "expected"), [("P30D", timedelta(days=30)), ("3600", timedelta(hours=1))]
)
def test_durations_accept_iso_8601_or_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: timedelta
) -> None:
    monkeypatch.setenv("JOB_RETENTION", value)
    get_settings.cache_clear()

    assert get_settings().job_retention == expected


def test_a_retention_that_is_not_positive_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_EVERY", "0")
    get_settings.cache_clear()

    with pytest.raises(ValueError, match="positive duration"):
        get_settings()
