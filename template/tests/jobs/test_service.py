"""Job rows under concurrent operations: keyset pages, and conditional state changes."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.database import session_scope
from app.jobs.models import Job, JobStatus
from app.jobs.service import JobQuery, decode_cursor, encode_cursor, get_job_store

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def insert_jobs(kind: str, offsets: list[int], status: JobStatus = JobStatus.SUCCEEDED) -> None:
    """Rows of `kind` created `offset` seconds after EPOCH (equal offsets: equal timestamps)."""
    with session_scope() as session:
        for offset in offsets:
            moment = EPOCH + timedelta(seconds=offset)
            session.add(
                Job(
                    id=uuid.uuid4(),
                    kind=kind,
                    status=status,
                    args={},
                    attempts=1,
                    created_at=moment,
                    updated_at=moment,
                )
            )


def newest_first(kind: str) -> list[tuple[datetime, uuid.UUID]]:
    with session_scope() as session:
        rows = session.query(Job).filter(Job.kind == kind).all()
        return sorted(((job.created_at, job.id) for job in rows), reverse=True)


# Few distinct offsets, so many rows share a timestamp and the id has to break the tie.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offsets=st.lists(st.integers(0, 5), max_size=40),
    limit=st.integers(1, 7),
    inserted_per_page=st.integers(0, 3),
)
def test_pages_list_every_row_exactly_once_while_new_jobs_arrive(
    offsets: list[int], limit: int, inserted_per_page: int
) -> None:
    kind = f"prop.{uuid.uuid4().hex}"  # each example sees only its own rows
    insert_jobs(kind, offsets)
    expected = newest_first(kind)
    store = get_job_store()

    seen: list[tuple[datetime, uuid.UUID]] = []
    cursor = None
    for _ in range(len(offsets) + 2):
        page = store.page(JobQuery(kind=kind, limit=limit, cursor=cursor))
        assert len(page.items) <= limit
        seen += [(job.created_at, job.id) for job in page.items]
        # Jobs created meanwhile are newer than every page so far: they must not shift it.
        insert_jobs(kind, [1000] * inserted_per_page)
        if page.next_cursor is None:
            break
        cursor = decode_cursor(page.next_cursor)

    assert seen == expected


def test_filters_combine_status_kind_and_created_range() -> None:
    insert_jobs("a", [1, 2, 3], JobStatus.FAILED)
    insert_jobs("a", [2], JobStatus.SUCCEEDED)
    insert_jobs("b", [2], JobStatus.FAILED)

    page = get_job_store().page(
        JobQuery(
            statuses=(JobStatus.FAILED,),
            kind="a",
            created_after=EPOCH + timedelta(seconds=1),
            created_before=EPOCH + timedelta(seconds=3),
        )
    )

    assert [(job.kind, job.status, job.created_at) for job in page.items] == [
        ("a", "failed", EPOCH + timedelta(seconds=2))
    ]
    assert page.next_cursor is None


@pytest.mark.parametrize(
    "cursor", ["", "!!!", "bm90IGEgY3Vyc29y", encode_cursor(EPOCH, uuid.UUID(int=7))[:-4]]
)
def test_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(cursor)


def test_cursor_round_trips() -> None:
    job_id = uuid.uuid4()
    assert decode_cursor(encode_cursor(EPOCH, job_id)) == (EPOCH, job_id)


async def created(status: JobStatus = JobStatus.QUEUED) -> uuid.UUID:
    store = get_job_store()
    job_id = await store.create("samples.echo", {"value": "x"}, None)
    if status == JobStatus.RUNNING:
        assert await store.start_attempt(job_id) == 1
    elif status == JobStatus.FAILED:
        await store.start_attempt(job_id)
        await store.fail(job_id, "boom")
    return job_id


def status_of(job_id: uuid.UUID) -> str:
    job = get_job_store().get(job_id)
    assert job is not None
    return job.status


def test_cancel_racing_the_start_either_cancels_or_lets_it_run() -> None:
    asyncio.run(_cancel_racing_the_start_either_cancels_or_lets_it_run())


async def _cancel_racing_the_start_either_cancels_or_lets_it_run() -> None:
    store = get_job_store()
    outcomes = set()
    for _ in range(30):
        job_id = await created()
        cancelled, attempt = await asyncio.gather(
            store.cancel(job_id, running_too=False), store.start_attempt(job_id)
        )
        # Never both: a cancelled job that starts anyway, or a started one marked cancelled.
        assert cancelled != (attempt is not None)
        assert status_of(job_id) == ("cancelled" if cancelled else "running")
        outcomes.add(cancelled)
    assert outcomes  # at least one race ran; both orders are fine


def test_cancelled_job_is_not_started_nor_overwritten_by_its_outcome() -> None:
    asyncio.run(_cancelled_job_is_not_started_nor_overwritten_by_its_outcome())


async def _cancelled_job_is_not_started_nor_overwritten_by_its_outcome() -> None:
    store = get_job_store()
    job_id = await created(JobStatus.RUNNING)
    assert await store.cancel(job_id, running_too=True)

    await store.succeed(job_id, "too late")
    await store.retry_later(job_id, "too late")

    job = store.get(job_id)
    assert job is not None
    assert (job.status, job.result) == ("cancelled", None)
    assert await store.start_attempt(job_id) is None


def test_running_job_is_only_cancelled_when_its_unit_allows() -> None:
    asyncio.run(_running_job_is_only_cancelled_when_its_unit_allows())


async def _running_job_is_only_cancelled_when_its_unit_allows() -> None:
    store = get_job_store()
    job_id = await created(JobStatus.RUNNING)

    assert not await store.cancel(job_id, running_too=False)
    assert status_of(job_id) == "running"


def test_two_retries_at_once_queue_the_job_once() -> None:
    asyncio.run(_two_retries_at_once_queue_the_job_once())


async def _two_retries_at_once_queue_the_job_once() -> None:
    store = get_job_store()
    job_id = await created(JobStatus.FAILED)

    results = await asyncio.gather(*(store.retry(job_id) for _ in range(5)))

    assert sorted(results) == [False] * 4 + [True]
    assert status_of(job_id) == "queued"


def test_retry_keeps_the_attempt_history_and_grants_a_fresh_budget() -> None:
    asyncio.run(_retry_keeps_the_attempt_history_and_grants_a_fresh_budget())


async def _retry_keeps_the_attempt_history_and_grants_a_fresh_budget() -> None:
    store = get_job_store()
    job_id = await created(JobStatus.FAILED)

    assert await store.retry(job_id)
    attempt = await store.start_attempt(job_id)

    job = store.get(job_id)
    assert job is not None
    assert attempt == 1  # counted from the retry: the unit gets its attempts again
    assert job.attempts == 2  # the row keeps every attempt
    assert job.error == "boom"  # the last failure stays visible until the next outcome


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_unfinished_job_cannot_be_retried(status: JobStatus) -> None:
    asyncio.run(_unfinished_job_cannot_be_retried(status))


async def _unfinished_job_cannot_be_retried(status: JobStatus) -> None:
    job_id = await created(status)

    assert not await get_job_store().retry(job_id)
    assert status_of(job_id) == status
