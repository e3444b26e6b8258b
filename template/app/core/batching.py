"""A worker thread fed in batches: what an event loop awaits during one turn travels together."""

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
# What happened to each item of a batch: its result, or its exception.
Outcomes = list[Any]

logger = logging.getLogger(__name__)


class BatchingThread(Generic[Item]):
    """Hands items to one thread, which processes everything waiting as one batch.

    Why: blocking I/O (a database commit, a broker publish) must stay off the event loop,
    but a hand-off between threads costs a wake-up on each side. Paying it once per batch
    instead of once per item is what keeps a busy service fast. Items keep their order.
    """

    def __init__(self, name: str, max_batch: int = 1000) -> None:
        self._name = name
        self._max_batch = max_batch
        # Process each batch on the thread that handed it over, instead: for a process with
        # nothing else to do meanwhile (a Celery worker child), the hand-off is pure cost.
        self.inline = False
        # The running thread and the queue only it reads. A thread started after close()
        # gets a queue of its own: sharing one, a new thread could take the old one's stop
        # sign, leaving the old one waiting forever and the new one gone with items queued.
        self._worker: tuple[threading.Thread, Requests[Item]] | None = None
        self._lock = threading.Lock()
        self._waiting: dict[asyncio.AbstractEventLoop, list[Waiting[Item]]] = {}

    def process(self, items: list[Item]) -> Outcomes:
        """Handle one batch in the thread; return one result or exception per item."""
        raise NotImplementedError

    async def run(self, item: Item) -> Any:
        """Hand `item` over and await its outcome without blocking the event loop."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._add(loop, item, waiter)
        return await waiter

    def run_soon(self, item: Item) -> None:
        """Hand `item` over without waiting; it still comes before anything handed later."""
        self._add(asyncio.get_running_loop(), item, None)

    def run_sync(self, item: Item) -> Any:
        """From a thread without an event loop: block until the item is processed."""
        outcome = self._outcomes([item])[0] if self.inline else self._submit([item]).result()[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self, timeout: float = 10.0) -> None:
        """Process what is queued, then stop the thread."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            thread, requests = worker
            requests.put(None)
            thread.join(timeout)

    def _add(
        self, loop: asyncio.AbstractEventLoop, item: Item, waiter: asyncio.Future[Any] | None
    ) -> None:
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            loop.call_soon(self._hand_over, loop)  # once every item of this turn is in
        waiting.append((item, waiter))

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting.pop(loop)
        items = [item for item, _ in waiting]
        if self.inline:
            _settle(waiting, self._outcomes(items))
            return
        done = self._submit(items)
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(_settle, waiting, f.result()))

    def _outcomes(self, items: list[Item]) -> Outcomes:
        try:
            return self.process(items)
        except Exception as exc:
            return [exc] * len(items)

    def _submit(self, items: list[Item]) -> Future[Outcomes]:
        done: Future[Outcomes] = Future()
        with self._lock:  # so close() cannot stop the thread between these two lines
            if self._worker is None:
                requests: Requests[Item] = queue.SimpleQueue()
                thread = threading.Thread(
                    target=self._loop, args=(requests,), name=self._name, daemon=True
                )
                thread.start()
                self._worker = thread, requests
            self._worker[1].put((items, done))
        return done

    def _loop(self, requests_queue: "Requests[Item]") -> None:
        stop = False
        while not stop:
            request = requests_queue.get()
            if request is None:
                return
            requests = [request]
            size = len(request[0])
            while size < self._max_batch:  # take whatever else is already waiting
                try:
                    request = requests_queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    stop = True
                    break
                requests.append(request)
                size += len(request[0])
            outcomes = self._outcomes([item for items, _ in requests for item in items])
            for items, done in requests:
                done.set_result(outcomes[: len(items)])
                outcomes = outcomes[len(items) :]


Waiting = tuple[Item, "asyncio.Future[Any] | None"]
# A batch and the future of its outcomes, or None: the thread's stop sign.
Requests = queue.SimpleQueue[tuple[list[Item], Future[Outcomes]] | None]


def _settle(waiting: list[Waiting[Any]], outcomes: Outcomes) -> None:
    for (_, waiter), outcome in zip(waiting, outcomes, strict=True):
        if waiter is None:
            if isinstance(outcome, BaseException):
                logger.error("background write or publish failed: %s", outcome)
        elif waiter.done():  # its caller was cancelled; the item was still processed
            continue
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
