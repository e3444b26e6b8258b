"""The task interface: what enqueueing refuses before any job row is written; staging; schedules."""

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.database import session_scope
from app.core.logging import request_id_var
from app.jobs.models import Job
from app.tasks import Schedule, Task, stage, task


def takes_a_value(value: object) -> None:
    """A unit of work's signature: one argument named `value`."""


UNIT = Task(name="tests.takes_a_value", fn=takes_a_value)


def test_json_arguments_the_function_takes_are_accepted() -> None:
    UNIT.check_arguments({"value": {"ids": [1, 2], "note": "ok", "ratio": 0.5}})


@pytest.mark.parametrize("value", [math.nan, math.inf, object(), {1, 2}])
def test_arguments_json_cannot_carry_are_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        UNIT.check_arguments({"value": value})


def test_arguments_the_function_does_not_take_are_refused() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'other'"):
        UNIT.check_arguments({"value": 1, "other": 2})


# --- staging a job in the caller's transaction ---


def job_rows() -> list[Job]:
    with session_scope() as session:
        return list(session.scalars(select(Job)))


def test_a_staged_job_commits_with_the_callers_transaction_and_carries_the_request_id() -> None:
    token = request_id_var.set("req-staged")
    try:
        with session_scope() as session:
            job = stage(session, UNIT, value=1)
    finally:
        request_id_var.reset(token)

    [row] = job_rows()
    assert (row.id, row.kind, row.status, row.args) == (job.id, UNIT.name, "queued", {"value": 1})
    assert row.request_id == job.request_id == "req-staged"
    assert row.created_at == row.updated_at  # its lease starts at creation


def test_a_staged_job_rolls_back_with_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        stage(session, UNIT, value=1)
        raise RuntimeError("the domain row could not be written")

    assert job_rows() == []


def test_staging_refuses_arguments_the_function_does_not_take() -> None:
    with pytest.raises(TypeError), session_scope() as session:
        stage(session, UNIT, other=2)

    assert job_rows() == []


# --- periodic units ---


def test_interval_schedule_skips_missed_occurrences_to_the_next_one_ahead() -> None:
    schedule = Schedule(every=timedelta(minutes=10))
    due = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    assert schedule.next_run(due, due) == due + timedelta(minutes=10)
    # Down for 35 minutes: the next occurrence is 12:40, not 12:10 (one firing, not four).
    assert schedule.next_run(due, due + timedelta(minutes=35)) == due + timedelta(minutes=40)


def test_cron_schedule_runs_at_the_next_matching_minute_in_utc() -> None:
    schedule = Schedule(cron="*/15 * * * *")
    now = datetime(2026, 1, 1, 12, 7, tzinfo=UTC)

    assert schedule.first_run(now) == datetime(2026, 1, 1, 12, 15, tzinfo=UTC)
    assert schedule.next_run(now, now + timedelta(hours=2)) == datetime(
        2026, 1, 1, 14, 15, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"every": timedelta(0)}, "positive"),
        ({"cron": "every day"}, "not a cron expression"),
        ({"every": timedelta(1), "cron": "* * * * *"}, "exactly one"),
    ],
)
def test_bad_schedules_are_refused_with_a_message(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)


def test_periodic_unit_that_takes_arguments_is_refused() -> None:
    with pytest.raises(ValueError, match="must take no arguments"):
        task("tests.periodic_with_args", schedule=Schedule(every=timedelta(1)))(lambda n: n)
