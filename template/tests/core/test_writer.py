"""The group-commit writer: many writes share transactions, and one bad write spoils none."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, func, insert, select

from app.core.database import create_db_engine
from app.core.writer import GroupCommitWriter

metadata = MetaData()
rows = Table("rows", metadata, Column("id", Integer, primary_key=True), Column("n", Integer))
INSERT = insert(rows)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[GroupCommitWriter, Engine, list[int]]]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'w.db'}")
    metadata.create_all(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    writer = GroupCommitWriter(engine)
    yield writer, engine, commits
    writer.close()
    engine.dispose()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(rows)) or 0


def test_concurrent_writes_commit_in_far_fewer_transactions(writer) -> None:
    writer, engine, commits = writer

    async def write_many() -> None:
        await asyncio.gather(*(writer.run(INSERT, {"id": i, "n": i}) for i in range(500)))

    asyncio.run(write_many())

    assert count(engine) == 500
    assert len(commits) < 100


def test_a_failing_write_does_not_fail_its_batch_neighbours(writer) -> None:
    writer, engine, _ = writer
    writer.submit(INSERT, {"id": 1, "n": 1}).result(timeout=5)

    futures = [writer.submit(INSERT, {"id": i, "n": i}) for i in (2, 1, 3)]

    assert futures[0].exception(timeout=5) is None
    assert futures[1].exception(timeout=5) is not None  # duplicate key
    assert futures[2].exception(timeout=5) is None
    with engine.connect() as conn:
        assert sorted(conn.scalars(select(rows.c.id))) == [1, 2, 3]


def test_scalar_writes_return_what_the_statement_returned(writer) -> None:
    writer, _, _ = writer

    value = writer.submit(INSERT.returning(rows.c.n), {"id": 7, "n": 42}, scalar=True)

    assert value.result(timeout=5) == 42


def test_close_commits_what_is_still_queued(writer) -> None:
    writer, engine, _ = writer
    for i in range(50):
        writer.submit(INSERT, {"id": i, "n": i})

    writer.close()

    assert count(engine) == 50
