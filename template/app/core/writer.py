"""One writer thread that group-commits small writes, so many requests share a transaction."""

import asyncio
import itertools
import queue
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine, Executable

# Why: SQLite takes one writer at a time, and one transaction per request makes writers
# queue on its lock (about 0.15x of a bare endpoint's throughput, measured). One thread
# committing everything that is waiting in a single transaction keeps each caller's write
# durable before it returns, at a fraction of the cost. Consecutive writes of the same
# statement go to the driver as one executemany, so a row costs microseconds, not a
# round of SQLAlchemy's per-statement work.
MAX_BATCH = 1000

# (statement, parameters, returns a scalar?, future)
Write = tuple[Executable, dict[str, Any], bool, Future[Any]]


class GroupCommitWriter:
    """Runs writes in FIFO order, committing whatever is waiting in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(
        self, statement: Executable, params: dict[str, Any], *, scalar: bool = False
    ) -> Future[Any]:
        """Queue one write; the future resolves once its transaction committed.

        Pass the same statement object for the same kind of write (parameters apart), so
        a batch of them runs as a single executemany. With `scalar`, the statement (one
        with RETURNING) runs on its own and the future resolves to the value it returned.
        """
        future: Future[Any] = Future()
        self._ensure_started()
        self._queue.put((statement, params, scalar, future))
        return future

    async def run(
        self, statement: Executable, params: dict[str, Any], *, scalar: bool = False
    ) -> Any:
        """Await the write's commit without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(statement, params, scalar=scalar))

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="db-writer", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[Write]) -> None:
        results: dict[int, Any] = {}
        try:
            with self._engine.begin() as connection:
                for (statement, scalar), group in itertools.groupby(batch, key=_kind):
                    writes = list(group)
                    if scalar:
                        for _, params, _, future in writes:
                            results[id(future)] = connection.execute(statement, params).scalar()
                    else:
                        connection.execute(statement, [write[1] for write in writes])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][3], exception=exc)
                return
            # One bad write must not fail its neighbours: retry each on its own.
            for write in batch:
                self._commit([write])
            return
        for *_, future in batch:
            _settle(future, result=results.get(id(future)))


def _kind(write: Write) -> tuple[Executable, bool]:
    return write[0], write[2]


def _settle(
    future: Future[Any], result: Any = None, exception: BaseException | None = None
) -> None:
    if future.done():  # the awaiting caller was cancelled; the write still committed
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
