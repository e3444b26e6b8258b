"""The group-commit writer: many writes share transactions, and one bad write spoils none."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, func, insert, select

from app.core.database import create_db_engine
from app.core.writer import GroupCommitWriter

metadata = MetaData()
rows = Table("rows", metadata, Column("id", Integer, primary_key=True))


@pytest.fixture
def writer(tmp_path: Path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'w.db'}")
    metadata.create_all(engine)
    commits = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    writer = GroupCommitWriter(engine)
    yield writer, engine, commits
    writer.close()
    engine.dispose()


def test_concurrent_writes_commit_in_far_fewer_transactions(writer) -> None:
    writer, engine, commits = writer

    async def write_many() -> None:
        await asyncio.gather(
            *(
                writer.run(lambda conn, i=i: conn.execute(insert(rows).values(id=i)))
                for i in range(500)
            )
        )

    asyncio.run(write_many())

    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(rows)) == 500
    assert len(commits) < 100


def test_a_failing_write_does_not_fail_its_batch_neighbours(writer) -> None:
    writer, engine, _ = writer
    writer.run_sync(lambda conn: conn.execute(insert(rows).values(id=1)))

    futures = [
        writer.submit(lambda conn, i=i: conn.execute(insert(rows).values(id=i))) for i in (2, 1, 3)
    ]

    assert futures[0].exception(timeout=5) is None
    assert futures[1].exception(timeout=5) is not None  # duplicate key
    assert futures[2].exception(timeout=5) is None
    with engine.connect() as conn:
        assert sorted(conn.scalars(select(rows.c.id))) == [1, 2, 3]
