"""One writer thread that group-commits small writes, so many requests share a transaction."""

import asyncio
import itertools
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine, Executable

# Why: SQLite takes one writer at a time, and one transaction per request makes writers
# queue on its lock (about 0.15x of a bare endpoint's throughput, measured). One thread
# committing everything that is waiting in a single transaction keeps each caller's write
# durable before it returns, at a fraction of the cost. The cost that remains is handing
# work between threads, so it is paid per batch, not per write: writes awaited during one
# event-loop turn travel to the thread together and come back with one wake-up, and
# consecutive writes of the same statement reach the driver as one executemany.
MAX_BATCH = 1000
logger = logging.getLogger(__name__)

# (statement, parameters, returns a scalar?)
Write = tuple[Executable, dict[str, Any], bool]
# What happened to each write of a request: its scalar (or None), or its exception.
Outcomes = list[Any]
Request = tuple[list[Write], Future[Outcomes]]
# A write queued from an event loop, with whoever awaits it (None: nobody does).
Waiting = tuple[Write, "asyncio.Future[Any] | None"]


class GroupCommitWriter:
    """Runs writes in FIFO order, committing whatever is waiting in one transaction.

    Pass the same statement object for the same kind of write (parameters apart), so a
    batch of them runs as a single executemany. With `scalar=True` the statement (one with
    RETURNING) runs on its own and its returned value comes back.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._waiting: dict[asyncio.AbstractEventLoop, list[Waiting]] = {}

    async def run(
        self, statement: Executable, params: dict[str, Any], *, scalar: bool = False
    ) -> Any:
        """Await the write's commit without blocking the event loop."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._enqueue(loop, (statement, params, scalar), waiter)
        return await waiter

    def write_soon(self, statement: Executable, params: dict[str, Any]) -> None:
        """Queue a write from the event loop without waiting for it (its failure is logged).

        It still commits in order: before any write awaited later from this loop.
        """
        self._enqueue(asyncio.get_running_loop(), (statement, params, False), None)

    def run_sync(
        self, statement: Executable, params: dict[str, Any], *, scalar: bool = False
    ) -> Any:
        """Write from a thread that has no event loop; blocks until the commit."""
        outcome = self._submit([(statement, params, scalar)]).result()[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _enqueue(
        self, loop: asyncio.AbstractEventLoop, write: Write, waiter: asyncio.Future[Any] | None
    ) -> None:
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            loop.call_soon(self._hand_over, loop)  # after every write of this turn is in
        waiting.append((write, waiter))

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting.pop(loop)
        done = self._submit([write for write, _ in waiting])
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(_settle, waiting, f))

    def _submit(self, writes: list[Write]) -> Future[Outcomes]:
        done: Future[Outcomes] = Future()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="db-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put((writes, done))
        return done

    def _loop(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            batch = [request]
            size = len(request[0])
            stop = False
            while size < MAX_BATCH:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    stop = True
                    break
                batch.append(request)
                size += len(request[0])
            writes = [write for writes, _ in batch for write in writes]
            outcomes = self._commit(writes)
            for writes, done in batch:
                done.set_result(outcomes[: len(writes)])
                outcomes = outcomes[len(writes) :]
            if stop:
                return

    def _commit(self, writes: list[Write]) -> Outcomes:
        """Commit all writes in one transaction; if one fails, each alone (none spoils another)."""
        try:
            outcomes: Outcomes = []
            with self._engine.begin() as connection:
                for (statement, scalar), group in itertools.groupby(
                    writes, key=lambda w: (w[0], w[2])
                ):
                    params = [write[1] for write in group]
                    if scalar:
                        outcomes += [connection.execute(statement, p).scalar() for p in params]
                    else:
                        connection.execute(statement, params)
                        outcomes += [None] * len(params)
            return outcomes
        except Exception as exc:
            if len(writes) == 1:
                return [exc]
            return [outcome for write in writes for outcome in self._commit([write])]


def _settle(waiting: list[Waiting], done: Future[Outcomes]) -> None:
    for (_, waiter), outcome in zip(waiting, done.result(), strict=True):
        if waiter is None:
            if isinstance(outcome, BaseException):
                logger.error("a write nobody waited for failed: %s", outcome)
        elif waiter.done():  # its caller was cancelled; the write still committed
            continue
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
