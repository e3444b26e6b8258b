"""The recorder's bounded buffer and batched writes, percentiles, and the request-log queries."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from app.core.database import get_sessionmaker
from app.features.request_logging.service import (
    RequestRecorder,
    list_requests,
    nearest_rank,
)
from tests.features.request_logging.records import make_record


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("request_log_records_dropped_total", {"reason": reason}) or 0


def test_full_buffer_drops_the_oldest_records_and_counts_them() -> None:
    batches: list[list[dict[str, Any]]] = []
    recorder = RequestRecorder(
        buffer_size=3, batch_size=100, flush_interval=60, write=batches.append
    )
    before = dropped("overflow")

    for number in range(5):
        recorder.add(make_record(path=f"/{number}"))
    asyncio.run(recorder.flush())

    assert dropped("overflow") - before == 2
    assert [[record["path"] for record in batch] for batch in batches] == [["/2", "/3", "/4"]]


def test_records_are_written_in_batches_of_the_configured_size() -> None:
    batches: list[list[dict[str, Any]]] = []
    recorder = RequestRecorder(
        buffer_size=100, batch_size=4, flush_interval=60, write=batches.append
    )

    for number in range(10):
        recorder.add(make_record(path=f"/{number}"))
    asyncio.run(recorder.flush())

    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert len(recorder) == 0


def test_a_failed_write_keeps_the_batch_for_the_next_flush_in_order() -> None:
    written: list[str] = []
    failures = [ConnectionError("database is down")]

    def flaky_write(batch: list[dict[str, Any]]) -> None:
        if failures:
            raise failures.pop()
        written.extend(record["path"] for record in batch)

    recorder = RequestRecorder(buffer_size=10, batch_size=2, flush_interval=60, write=flaky_write)
    for number in range(3):
        recorder.add(make_record(path=f"/{number}"))

    asyncio.run(recorder.flush())
    assert (written, len(recorder)) == ([], 3)

    asyncio.run(recorder.flush())
    assert (written, len(recorder)) == (["/0", "/1", "/2"], 0)


def test_stop_writes_everything_still_buffered() -> None:
    written: list[dict[str, Any]] = []

    async def run() -> None:
        recorder = RequestRecorder(
            buffer_size=100, batch_size=50, flush_interval=3600, write=written.extend
        )
        recorder.start()
        for _ in range(7):
            recorder.add(make_record())
        await recorder.stop()

    asyncio.run(run())

    assert len(written) == 7


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(50, 50.0), (95, 95.0), (99, 99.0), (100, 100.0), (1, 1.0)],
)
def test_nearest_rank_on_one_to_a_hundred(percent: int, expected: float) -> None:
    assert nearest_rank([float(n) for n in range(1, 101)], percent) == expected


@pytest.mark.parametrize(
    ("percent", "expected"), [(26, 20.0), (50, 20.0), (60, 30.0), (95, 40.0), (99, 40.0)]
)
def test_nearest_rank_rounds_the_rank_up(percent: int, expected: float) -> None:
    # n = 4: p26 is rank ceil(1.04) = 2, p50 rank 2, p60 rank ceil(2.4) = 3, p95 rank 4.
    assert nearest_rank([10.0, 20.0, 30.0, 40.0], percent) == expected


def test_request_filters_combine_and_newest_comes_first(
    insert_records: Callable[[list[dict[str, Any]]], None],
) -> None:
    now = datetime.now(UTC)
    insert_records(
        [
            {"path": "/a", "status": 200, "created_at": now - timedelta(hours=2)},
            {"path": "/a", "status": 500, "created_at": now - timedelta(minutes=2)},
            {"path": "/a", "status": 200, "created_at": now - timedelta(minutes=1)},
            {"path": "/b", "status": 200, "created_at": now},
        ]
    )

    with get_sessionmaker()() as session:
        recent_a = list_requests(
            session,
            path="/a",
            route=None,
            status=None,
            since=now - timedelta(hours=1),
            limit=10,
            offset=0,
        )
        errors = list_requests(
            session, path=None, route=None, status=500, since=None, limit=10, offset=0
        )

    assert [record.status for record in recent_a.items] == [200, 500]
    assert recent_a.total == 2
    assert [record.path for record in errors.items] == ["/a"]
