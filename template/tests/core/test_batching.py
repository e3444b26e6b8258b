"""The batching thread under the writer and the publisher: nothing handed over is lost at close()."""

import threading
import time
from collections.abc import Callable

from app.core.batching import BatchingThread, Outcomes

NAME = "test-batches"


class Held(BatchingThread[str]):
    """Records what it processes; holds each batch until released."""

    def __init__(self) -> None:
        super().__init__(NAME)
        self.started = threading.Event()
        self.release = threading.Event()
        self.processed: list[str] = []

    def process(self, items: list[str]) -> Outcomes:
        self.started.set()
        self.release.wait(10)
        self.processed.extend(items)
        return [f"done {item}" for item in items]


def in_thread(target: Callable[..., object], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def threads_left() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == NAME]


def test_work_handed_over_while_closing_is_done_and_close_returns() -> None:
    batches = Held()
    results: list[str] = []
    first = in_thread(lambda: results.append(batches.run_sync("first")))
    assert batches.started.wait(5)
    # Shutdown begins while the thread is busy: close() waits for it to stop...
    closing = in_thread(batches.close, 30.0)
    time.sleep(0.05)  # (the order below holds whatever close() has done by then)
    # ...and meanwhile another caller (a Celery worker thread in the same process) hands
    # over more work, which starts a thread of its own.
    second = in_thread(lambda: results.append(batches.run_sync("second")))
    batches.release.set()

    for thread in (first, second, closing):
        thread.join(5)
    assert not closing.is_alive(), "close() still waiting for a thread that never stops"
    assert sorted(results) == ["done first", "done second"]
    assert sorted(batches.processed) == ["first", "second"]

    batches.close()
    deadline = time.monotonic() + 30
    while threads_left() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threads_left() == []
