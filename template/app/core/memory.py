"""The garbage collector's view of a long-running process."""

import gc
from functools import cache


@cache  # once per process: objects made after the first start-up stay collectable
def freeze_start_up_objects() -> None:
    """Take everything start-up built out of the garbage collector's reach.

    Modules, routes and table metadata live as long as the process. Left in the collector's
    generations, every full collection walks them all, and each request in flight waits out
    that pause (measured under load with `python -m bench`: enqueue p99 81 ms before,
    11-15 ms after).
    """
    gc.freeze()
