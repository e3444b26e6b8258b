"""Celery only: how many tasks per second one worker runs, raw or wrapped as durable jobs.

`python -m app.bench.drain COUNT --wrapped --workdir DIR` queues a start marker, COUNT
tasks, an end marker, and prints COUNT divided by the time between the markers.
"""

import argparse
import asyncio
import time
import uuid
from pathlib import Path

from app.bench.celery_raw import mark, raw_noop
from app.jobs.service import get_job_store
from app.worker import run_job


async def create_jobs(count: int) -> list[uuid.UUID]:
    store = get_job_store()
    return list(await asyncio.gather(*(store.create("bench.noop", {}, None) for _ in range(count))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("--wrapped", action="store_true", help="durable jobs, not raw tasks")
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    start = args.workdir / f"start-{args.wrapped}"
    end = args.workdir / f"end-{args.wrapped}"
    for marker in (start, end):  # left by an earlier run (a warm-up) in the same directory
        marker.unlink(missing_ok=True)
    job_ids: list[uuid.UUID] = []
    if args.wrapped:
        job_ids = asyncio.run(create_jobs(args.count))
        get_job_store().close()
    mark.delay(str(start))
    for i in range(args.count):
        if args.wrapped:
            run_job.apply_async(args=("bench.noop", str(job_ids[i]), {}, None), shadow="bench.noop")
        else:
            raw_noop.delay()
    mark.delay(str(end))
    deadline = time.time() + 300
    while not end.exists() and time.time() < deadline:
        time.sleep(0.05)
    print(args.count / (float(end.read_text()) - float(start.read_text())))


if __name__ == "__main__":
    main()
