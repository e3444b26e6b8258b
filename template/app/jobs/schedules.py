"""The `job_schedules` rows: when each periodic unit is next due, claimed once per occurrence."""

import asyncio
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.core.database import get_sessionmaker
from app.jobs.models import JobSchedule
from app.jobs.service import get_job_store

_schedules = cast(Table, JobSchedule.__table__)
_PLAN = insert(_schedules)
# The condition and the move are one statement: of several processes claiming one
# occurrence at once, exactly one gets its row back.
_CLAIM = (
    update(_schedules)
    .where(
        _schedules.c.name == bindparam("schedule_name"),
        _schedules.c.next_run_at == bindparam("seen"),
    )
    .values(next_run_at=bindparam("following"))
    .returning(_schedules.c.name)
)


def planned() -> dict[str, datetime]:
    """Every schedule's next occurrence, by name."""
    with get_sessionmaker()() as session:
        return {row.name: row.next_run_at for row in session.scalars(select(JobSchedule))}


async def plan(name: str, first_run: datetime) -> datetime:
    """Record a schedule seen for the first time; another process may have been first."""
    try:
        await get_job_store().writer.write(_PLAN, {"name": name, "next_run_at": first_run})
    except IntegrityError:
        return (await asyncio.to_thread(planned)).get(name, first_run)
    return first_run


async def claim(name: str, seen: datetime, following: datetime) -> bool:
    """Take the occurrence due at `seen`, moving the schedule on to `following`.

    False: another process took it first (the row no longer says `seen`).
    """
    params = {"schedule_name": name, "seen": seen, "following": following}
    taken = await get_job_store().writer.write(_CLAIM, params, scalar=True, key=("schedule", name))
    return taken is not None
