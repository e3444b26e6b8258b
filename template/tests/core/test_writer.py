"""The group-commit writer: many writes share transactions, and one bad write spoils none."""

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.core.database import create_db_engine
from app.core.writer import GroupCommitWriter

metadata = MetaData()
rows = Table("rows", metadata, Column("id", Integer, primary_key=True), Column("n", Integer))
INSERT = insert(rows)
SET = update(rows).where(rows.c.id == bindparam("row")).values(n=bindparam("value"))
DOUBLE = update(rows).where(rows.c.id == bindparam("row")).values(n=rows.c.n * 2)
ZERO_ALL = update(rows).values(n=0)


# The writer under test, its engine, and one entry per commit the engine made.
Harness = tuple[GroupCommitWriter, Engine, list[int]]


@pytest.fixture(params=[False, True], ids=["writer-thread", "inline"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'w.db'}")
    metadata.create_all(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    writer = GroupCommitWriter(engine)
    writer.inline = request.param
    yield writer, engine, commits
    writer.close()
    engine.dispose()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(rows)) or 0


def test_concurrent_writes_commit_in_far_fewer_transactions(harness: Harness) -> None:
    writer, engine, commits = harness

    async def write_many() -> None:
        await asyncio.gather(*(writer.write(INSERT, {"id": i, "n": i}) for i in range(500)))

    asyncio.run(write_many())

    assert count(engine) == 500
    assert len(commits) < 100


def test_a_failing_write_does_not_fail_its_batch_neighbours(harness: Harness) -> None:
    writer, engine, _ = harness
    writer.write_sync(INSERT, {"id": 1, "n": 1})

    async def write_together() -> list[object]:
        writes = [writer.write(INSERT, {"id": i, "n": i}) for i in (2, 1, 3)]
        outcomes: list[object] = await asyncio.gather(*writes, return_exceptions=True)
        return outcomes

    outcomes = asyncio.run(write_together())

    assert outcomes[0] is None
    assert isinstance(outcomes[1], IntegrityError)  # duplicate key
    assert outcomes[2] is None
    with engine.connect() as conn:
        assert sorted(conn.scalars(select(rows.c.id))) == [1, 2, 3]


def test_scalar_writes_return_what_the_statement_returned(harness: Harness) -> None:
    writer, _, _ = harness

    value = writer.write_sync(INSERT.returning(rows.c.n), {"id": 7, "n": 42}, scalar=True)

    assert value == 42


def test_writes_from_threads_and_event_loops_all_commit(harness: Harness) -> None:
    writer, engine, _ = harness

    async def from_a_loop(start: int) -> None:
        await asyncio.gather(
            *(writer.write(INSERT, {"id": i, "n": i}) for i in range(start, start + 50))
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: asyncio.run(from_a_loop(s)), [0, 100, 200]))
        list(pool.map(lambda i: writer.write_sync(INSERT, {"id": i, "n": i}), range(300, 350)))

    assert count(engine) == 200


def values(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(rows.c.id, rows.c.n)).all())


def test_interleaved_writes_to_many_rows_run_as_one_execution_per_statement(
    harness: Harness,
) -> None:
    writer, engine, _ = harness
    executions: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: executions.append(args[2]))

    async def lifecycles() -> None:
        # Each row: created, set, doubled; the rows' writes interleave as requests' do.
        writes = []
        for i in range(1, 51):
            writes.append(writer.write(INSERT, {"id": i, "n": 0}, key=i))
            writes.append(writer.write(SET, {"row": i, "value": i + 1}, key=i))
            writes.append(writer.write(DOUBLE, {"row": i}, key=i))
        await asyncio.gather(*writes)

    asyncio.run(lifecycles())

    assert len(executions) == 3
    assert values(engine) == {i: (i + 1) * 2 for i in range(1, 51)}


def test_a_write_without_a_key_keeps_its_place_between_the_others(harness: Harness) -> None:
    writer, engine, _ = harness
    writer.write_sync(INSERT, {"id": 1, "n": 1})
    writer.write_sync(INSERT, {"id": 2, "n": 2})

    async def around_a_barrier() -> None:
        await asyncio.gather(
            writer.write(SET, {"row": 1, "value": 10}, key=1),
            writer.write(ZERO_ALL, {}),
            writer.write(SET, {"row": 2, "value": 20}, key=2),
        )

    asyncio.run(around_a_barrier())

    # Had the second SET joined the first, the unkeyed write would have zeroed it.
    assert values(engine) == {1: 0, 2: 20}


def test_inline_writes_commit_on_the_callers_own_thread(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'w.db'}")
    metadata.create_all(engine)
    writer = GroupCommitWriter(engine)
    writer.inline = True
    threads: set[str] = set()
    event.listen(engine, "commit", lambda _conn: threads.add(threading.current_thread().name))

    async def write_some() -> None:
        await asyncio.gather(*(writer.write(INSERT, {"id": i, "n": i}) for i in range(10)))

    asyncio.run(write_some())
    writer.write_sync(INSERT, {"id": 10, "n": 10})

    assert threads == {threading.current_thread().name}
    assert count(engine) == 11
    engine.dispose()
