"""One writer thread that group-commits small writes, so many requests share a transaction."""

from collections.abc import Hashable
from typing import Any

from sqlalchemy import Engine, Executable

from app.core.batching import BatchingThread, Outcomes

# Why: SQLite takes one writer at a time, and one transaction per request makes writers
# queue on its lock (about 0.15x of a bare endpoint's throughput, measured). One thread
# committing everything that is waiting in a single transaction keeps each caller's write
# durable before it returns, at a fraction of the cost. Writes of the same statement reach
# the driver as one executemany: each statement execution costs far more than a row.

# (statement, parameters, returns a scalar?, the row it touches or None)
Write = tuple[Executable, dict[str, Any], bool, Hashable | None]
# Writes that run as one execution: (statement, returns a scalar?, their places in the batch)
Run = tuple[Executable, bool, list[int]]


class GroupCommitWriter(BatchingThread[Write]):
    """Commits writes in one transaction per batch, each row's writes in the order given.

    Pass the same statement object for the same kind of write (parameters apart), and the
    `key` of the row it touches: writes of one statement to different rows then run as a
    single executemany even when other writes come between them. A write without a key
    keeps its place relative to every other write. A write with `scalar=True` (a statement
    with RETURNING) gets its returned value back.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(name="db-writer")
        self._engine = engine

    async def write(
        self,
        statement: Executable,
        params: dict[str, Any],
        scalar: bool = False,
        key: Hashable | None = None,
    ) -> Any:
        """Await the write's commit without blocking the event loop."""
        return await self.run((statement, params, scalar, key))

    def write_soon(
        self, statement: Executable, params: dict[str, Any], key: Hashable | None = None
    ) -> None:
        """Queue a write without waiting for it; it commits before any later write to its row."""
        self.run_soon((statement, params, False, key))

    def write_sync(
        self,
        statement: Executable,
        params: dict[str, Any],
        scalar: bool = False,
        key: Hashable | None = None,
    ) -> Any:
        """Write from a thread that has no event loop; blocks until the commit."""
        return self.run_sync((statement, params, scalar, key))

    def process(self, items: list[Write]) -> Outcomes:
        """Commit all writes in one transaction; if one fails, each alone (none spoils another)."""
        try:
            outcomes: Outcomes = [None] * len(items)
            with self._engine.begin() as connection:
                for statement, scalar, places in plan(items):
                    params = [items[place][1] for place in places]
                    if scalar:
                        for place, one in zip(places, params, strict=True):
                            outcomes[place] = connection.execute(statement, one).scalar()
                    else:
                        connection.execute(statement, params)
            return outcomes
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            return [outcome for write in items for outcome in self.process([write])]


def plan(items: list[Write]) -> list[Run]:
    """Gather writes into as few executions as each row's order of writes allows.

    A write joins the latest run of its statement unless that run comes before a run that
    already wrote the same row (or before a write without a key): moving it there would
    reorder two writes to one row.
    """
    runs: list[Run] = []
    latest: dict[tuple[Executable, bool], int] = {}  # statement -> its latest run
    touched: dict[Hashable, int] = {}  # row -> the last run that wrote it
    barrier = -1  # the last run holding a write without a key
    for place, (statement, _, scalar, key) in enumerate(items):
        earliest = len(runs) - 1 if key is None else max(barrier, touched.get(key, -1))
        run = latest.get((statement, scalar), -1)
        if run < earliest or run < 0:
            run = latest[statement, scalar] = len(runs)
            runs.append((statement, scalar, []))
        runs[run][2].append(place)
        if key is None:
            barrier = run
        else:
            touched[key] = run
    return runs
