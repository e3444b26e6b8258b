"""One writer thread that group-commits small writes, so many requests share a transaction."""

import itertools
from typing import Any

from sqlalchemy import Engine, Executable

from app.core.batching import BatchingThread, Outcomes

# Why: SQLite takes one writer at a time, and one transaction per request makes writers
# queue on its lock (about 0.15x of a bare endpoint's throughput, measured). One thread
# committing everything that is waiting in a single transaction keeps each caller's write
# durable before it returns, at a fraction of the cost. Consecutive writes of the same
# statement reach the driver as one executemany.

# (statement, parameters, returns a scalar?)
Write = tuple[Executable, dict[str, Any], bool]


class GroupCommitWriter(BatchingThread[Write]):
    """Commits writes in FIFO order, everything waiting in one transaction.

    Pass the same statement object for the same kind of write (parameters apart), so a
    batch of them runs as a single executemany. A write with `scalar=True` (a statement
    with RETURNING) runs on its own and its returned value comes back.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(name="db-writer")
        self._engine = engine

    async def write(
        self, statement: Executable, params: dict[str, Any], scalar: bool = False
    ) -> Any:
        """Await the write's commit without blocking the event loop."""
        return await self.run((statement, params, scalar))

    def write_soon(self, statement: Executable, params: dict[str, Any]) -> None:
        """Queue a write without waiting for it; it commits before any later write."""
        self.run_soon((statement, params, False))

    def write_sync(
        self, statement: Executable, params: dict[str, Any], scalar: bool = False
    ) -> Any:
        """Write from a thread that has no event loop; blocks until the commit."""
        return self.run_sync((statement, params, scalar))

    def process(self, items: list[Write]) -> Outcomes:
        """Commit all writes in one transaction; if one fails, each alone (none spoils another)."""
        try:
            outcomes: Outcomes = []
            with self._engine.begin() as connection:
                for (statement, scalar), group in itertools.groupby(
                    items, key=lambda w: (w[0], w[2])
                ):
                    params = [write[1] for write in group]
                    if scalar:
                        outcomes += [connection.execute(statement, p).scalar() for p in params]
                    else:
                        connection.execute(statement, params)
                        outcomes += [None] * len(params)
            return outcomes
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            return [outcome for write in items for outcome in self.process([write])]
