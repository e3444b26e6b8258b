"""One writer thread that group-commits small writes, so many requests share a transaction."""

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")
Op = Callable[[Connection], Any]

logger = logging.getLogger(__name__)

# Why: SQLite takes one writer at a time, and one transaction per request makes
# writers queue on its lock (about 0.15x of a bare endpoint's throughput, measured).
# One thread committing everything waiting in a single transaction keeps each
# caller's write durable before it returns, at a fraction of the cost.
MAX_BATCH = 500


class GroupCommitWriter:
    """Runs write operations in FIFO order, committing whatever is waiting in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[tuple[Op, Future[Any]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, op: Op) -> Future[Any]:
        """Queue `op(connection)`; the future resolves once its transaction committed."""
        future: Future[Any] = Future()
        self._ensure_started()
        self._queue.put((op, future))
        return future

    async def run(self, op: Callable[[Connection], T]) -> T:
        """Await `op`'s commit without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(op))

    def run_sync(self, op: Callable[[Connection], T]) -> T:
        return self.submit(op).result()

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

    def _commit(self, batch: list[tuple[Op, Future[Any]]]) -> None:
        try:
            with self._engine.begin() as connection:
                results = [op(connection) for op, _ in batch]
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exception=exc)
                return
            # One bad write must not fail its neighbours: retry each on its own.
            for item in batch:
                self._commit([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(
    future: Future[Any], *, result: Any = None, exception: BaseException | None = None
) -> None:
    if future.done():  # the awaiting caller was cancelled; the write still committed
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
