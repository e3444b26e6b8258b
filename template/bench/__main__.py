"""`python -m bench`: what durable background work costs a request, and how fast jobs finish.

Starts the service (and, on Celery, a worker) on loopback with a throwaway database, drives a
bare endpoint and the real enqueue path from a separate load-generating process, waits for
every job, and prints a table plus one JSON object as its last line.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select

from app.jobs.models import Job, JobStatus
from app.tasks import RUNS_IN_API_PROCESS

PYTHON = sys.executable
CAN_READ_CPU = Path("/proc/self/task").is_dir()  # Linux; elsewhere the CPU columns stay empty


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(
    check: Any, process: subprocess.Popen[bytes], log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"benchmark process failed to start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time (user + system) of each thread of `pid` so far; empty where /proc is missing."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    threads: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        threads[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return threads


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (a Celery worker and its pool), so far."""
    total = sum(cpu_seconds(pid).values())
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(process_tree_cpu(int(child)) for child in children)


def cpu_per_request(
    pid: int, before: dict[int, float], requests: int, elapsed: float
) -> dict[str, float]:
    """Where a phase's CPU went, per request: the event loop (main thread), the other threads.

    Every thread of a Python process shares one interpreter lock, so a process that uses
    about one core in all is bound by it, whatever the number of threads.
    """
    after = cpu_seconds(pid)
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    main = spent.get(pid, 0.0)
    others = sum(spent.values()) - main
    per = 1e6 / max(requests, 1)
    return {
        "loop_us": round(main * per, 1),
        "threads_us": round(others * per, 1),
        "cores": round((main + others) / elapsed, 2) if elapsed else 0.0,
    }


def load(url: str, concurrency: int, duration: float, method: str = "POST") -> dict[str, Any]:
    """Drive `url` from a separate process, so client and server don't share a core's loop."""
    out = subprocess.run(
        [
            *(PYTHON, "-m", "bench.loadgen", url, "--method", method),
            *("--concurrency", str(concurrency), "--duration", str(duration)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stats: dict[str, Any] = json.loads(out)
    return stats


def wait_for_jobs(database_url: str, submitted: int, timeout: float) -> dict[str, Any]:
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    query = select(Job.status, func.count()).where(Job.kind == "bench.noop").group_by(Job.status)
    while True:
        with engine.connect() as conn:
            counts = dict(conn.execute(query).all())
        done = counts.get(JobStatus.SUCCEEDED, 0) + counts.get(JobStatus.FAILED, 0)
        if done >= submitted or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    with engine.connect() as conn:
        # Both None when no job succeeded.
        first, last = conn.execute(
            select(func.min(Job.created_at), func.max(Job.updated_at)).where(
                Job.kind == "bench.noop", Job.status == JobStatus.SUCCEEDED
            )
        ).one()
    engine.dispose()
    succeeded = counts.get(JobStatus.SUCCEEDED, 0)
    span = 0.0 if first is None or last is None else (last - first).total_seconds()
    return {
        "succeeded": succeeded,
        "failed": counts.get(JobStatus.FAILED, 0),
        "jobs_per_s": succeeded / span if span else 0.0,
    }


def drain_rate(env: dict[str, str], workdir: Path, count: int, wrapped: bool) -> float:
    """Tasks per second one worker runs, timed between two markers around `count` tasks."""
    command = [PYTHON, "-m", "bench.drain", str(count), "--workdir", str(workdir)]
    out = subprocess.run(
        [*command, *(["--wrapped"] if wrapped else [])], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        sys.exit(f"bookkeeping benchmark failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def price_bookkeeping(
    env: dict[str, str], workdir: Path, args: argparse.Namespace, worker: int
) -> dict[str, float]:
    """Raw Celery no-op throughput against the same work wrapped as durable jobs.

    Also the worker's CPU per task in each run: the rates are measured one after the other
    on a shared machine, its CPU time is the steadier reading of the same cost.
    """
    count = 200 if args.smoke else 3000
    for wrapped in (False, True):  # warm both paths up (imports, connections, first rows)
        drain_rate(env, workdir, count // 10, wrapped)
    result = {}
    for kind, wrapped in (("raw", False), ("wrapped", True)):
        before = process_tree_cpu(worker) if CAN_READ_CPU else 0.0
        result[f"{kind}_per_s"] = drain_rate(env, workdir, count, wrapped)
        if CAN_READ_CPU:
            result[f"{kind}_cpu_us"] = (process_tree_cpu(worker) - before) * 1e6 / (count + 2)
    return result


# The naive reference (bench/naive.py): what the FastAPI docs show, nothing durable.
NAIVE_APP = "bench.naive:app" if RUNS_IN_API_PROCESS else "bench.naive_celery:app"
NAIVE_ENQUEUE = "/enqueue" if RUNS_IN_API_PROCESS else "/delay"  # add_task, or .delay()


def ratio(ours: float, reference: float) -> float:
    return round(ours / reference, 3) if reference else 0.0


def naive_phases(
    env: dict[str, str], workdir: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """The plain app's bare endpoint and its naive enqueue, driven like the service's."""
    port = free_port()
    log = workdir / "naive.log"
    server = start(
        [
            *(PYTHON, "-m", "uvicorn", NAIVE_APP),
            *("--port", str(port), "--log-level", "warning", "--no-access-log"),
        ],
        env,
        log,
    )
    base = f"http://127.0.0.1:{port}"
    phases: dict[str, dict[str, Any]] = {}
    try:
        wait_ready(lambda: httpx.post(f"{base}/bare", timeout=1).is_success, server, log)
        for phase, path in (("bare", "/bare"), ("enqueue", NAIVE_ENQUEUE)):
            before, started = cpu_seconds(server.pid), time.monotonic()
            phases[phase] = load(f"{base}{path}", args.concurrency, args.duration)
            phases[phase]["cpu"] = cpu_per_request(
                server.pid, before, phases[phase]["requests"], time.monotonic() - started
            )
    finally:
        server.terminate()
        server.wait(15)
        if not RUNS_IN_API_PROCESS:  # no worker consumes the naive queue: empty it
            naive_celery = ("-A", "bench.naive_celery:celery_app")
            purge = ("purge", "-f", "-Q", env["NAIVE_QUEUE"])
            subprocess.run([PYTHON, "-m", "celery", *naive_celery, *purge], env=env, check=True)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="open connections")
    parser.add_argument(
        "--smoke", action="store_true", help="a one-second run that checks it works"
    )
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.concurrency = 1.0, 4

    workdir = Path(tempfile.mkdtemp(prefix="app-bench-"))
    database_url = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.db'}")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        "NAIVE_QUEUE": f"bench-naive-{uuid.uuid4().hex[:8]}",
        # A throwaway service on loopback, open like any development run without keys.
        "ENVIRONMENT": "development",
        "API_KEYS": "",
        "OPS_API_KEYS": "",
    }
    processes: list[subprocess.Popen[bytes]] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        # The load generator's own ceiling, against a server that answers instantly.
        port = free_port()
        log = workdir / "instant.log"
        instant = start([PYTHON, "-m", "bench.loadgen", "--serve", str(port)], env, log)
        processes.append(instant)
        wait_ready(lambda: "ready" in log.read_text(), instant, log)
        ceiling = load(f"http://127.0.0.1:{port}/", args.concurrency, args.duration)
        instant.terminate()
        naive = naive_phases(env, workdir, args)

        if not RUNS_IN_API_PROCESS:
            log = workdir / "worker.log"
            worker = start(
                [
                    *(PYTHON, "-m", "celery", "-A", "app.worker", "worker"),
                    *("--include", "bench.app,bench.celery_raw"),
                    *("--concurrency", str(args.workers)),
                    *("--loglevel", "WARNING", "--without-gossip", "--without-mingle"),
                ],
                env,
                log,
            )
            processes.append(worker)

        port = free_port()
        log = workdir / "api.log"
        api = start(
            [
                *(PYTHON, "-m", "uvicorn", "bench.app:create_bench_app", "--factory"),
                *("--port", str(port), "--log-level", "warning", "--no-access-log"),
            ],
            env,
            log,
        )
        processes.append(api)
        base = f"http://127.0.0.1:{port}"
        wait_ready(lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200, api, log)

        phases = {}
        worker_before = 0.0
        for phase in ("bare", "enqueue"):
            if phase == "enqueue" and worker is not None and CAN_READ_CPU:
                worker_before = process_tree_cpu(worker.pid)
            before, started = cpu_seconds(api.pid), time.monotonic()
            phases[phase] = load(f"{base}/bench/{phase}", args.concurrency, args.duration)
            phases[phase]["cpu"] = cpu_per_request(
                api.pid, before, phases[phase]["requests"], time.monotonic() - started
            )
        bare, enqueue = phases["bare"], phases["enqueue"]
        submitted = enqueue["statuses"].get("202", 0)
        jobs = wait_for_jobs(database_url, submitted, timeout=max(60, args.duration * 10))
        if worker is not None and CAN_READ_CPU:
            worker_cpu = process_tree_cpu(worker.pid) - worker_before
            jobs["worker_cpu_us_per_job"] = round(worker_cpu * 1e6 / max(jobs["succeeded"], 1), 1)
        bookkeeping = None if worker is None else price_bookkeeping(env, workdir, args, worker.pid)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    result = {
        "backend": "background_tasks" if RUNS_IN_API_PROCESS else "celery",
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "loadgen_ceiling_rps": round(ceiling["rps"], 1),
        "bare_rps": round(bare["rps"], 1),
        "enqueue_rps": round(enqueue["rps"], 1),
        "ratio": ratio(enqueue["rps"], bare["rps"]),
        "bare_p50_ms": round(bare["p50_ms"], 2),
        "bare_p99_ms": round(bare["p99_ms"], 2),
        "enqueue_p50_ms": round(enqueue["p50_ms"], 2),
        "enqueue_p99_ms": round(enqueue["p99_ms"], 2),
        "jobs_per_s": round(jobs["jobs_per_s"], 1),
        "naive_bare_rps": round(naive["bare"]["rps"], 1),
        "naive_rps": round(naive["enqueue"]["rps"], 1),
        # Our durable enqueue against the naive one, our bare endpoint against a plain app's.
        "vs_naive": ratio(enqueue["rps"], naive["enqueue"]["rps"]),
        "bare_vs_naive_bare": ratio(bare["rps"], naive["bare"]["rps"]),
        "submitted": submitted,
        "succeeded": jobs["succeeded"],
        "failed": jobs["failed"],
        "lost": submitted - jobs["succeeded"] - jobs["failed"],
        "errors": sum(n for code, n in enqueue["statuses"].items() if code != "202"),
        # API process CPU per request: on its event loop, on its other threads, cores used.
        "bare_cpu": bare["cpu"],
        "enqueue_cpu": enqueue["cpu"],
        "naive_bare_cpu": naive["bare"]["cpu"],
        "naive_cpu": naive["enqueue"]["cpu"],
    }
    if "worker_cpu_us_per_job" in jobs:
        result["worker_cpu_us_per_job"] = jobs["worker_cpu_us_per_job"]
    if bookkeeping:
        raw, wrapped = bookkeeping["raw_per_s"], bookkeeping["wrapped_per_s"]
        result["raw_celery_tasks_per_s"] = round(raw, 1)
        result["wrapped_jobs_per_s"] = round(wrapped, 1)
        result["bookkeeping_cost"] = round(1 - wrapped / raw, 3)
        if "raw_cpu_us" in bookkeeping:
            raw_cpu, wrapped_cpu = bookkeeping["raw_cpu_us"], bookkeeping["wrapped_cpu_us"]
            result["raw_task_cpu_us"] = round(raw_cpu, 1)
            result["wrapped_job_cpu_us"] = round(wrapped_cpu, 1)
            result["bookkeeping_cpu_cost"] = round(1 - raw_cpu / wrapped_cpu, 3)
    naive_name = "naive add_task" if RUNS_IN_API_PROCESS else "naive .delay()"
    measured: dict[str, dict[str, Any]] = {
        "load generator ceiling": ceiling,
        "naive bare (plain app)": naive["bare"],
        naive_name: naive["enqueue"],
        "bare endpoint": bare,
        "enqueue (durable job)": enqueue,
    }
    print(f"{'':24} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}   API CPU per request")
    for name, figures in measured.items():
        rps, p50, p99 = figures["rps"], figures["p50_ms"], figures["p99_ms"]
        cpu = figures.get("cpu")
        where = (
            f"   {cpu['loop_us']:.0f} µs loop + {cpu['threads_us']:.0f} µs threads"
            f" ({cpu['cores']:.2f} cores)"
            if cpu and cpu["cores"]
            else ""
        )
        print(f"{name:24} {rps:10.1f} {p50:8.2f} {p99:8.2f}{where}")
    print(
        f"enqueue/bare = {result['ratio']:.2f}; jobs {result['succeeded']}/{submitted} succeeded"
        f" at {result['jobs_per_s']:.0f}/s; lost {result['lost']}"
    )
    print(
        f"against the naive patterns: enqueue {result['vs_naive']:.2f}x {naive_name}, "
        f"bare {result['bare_vs_naive_bare']:.2f}x a plain app's bare endpoint"
    )
    if "worker_cpu_us_per_job" in result:
        print(f"worker CPU per job, end to end: {result['worker_cpu_us_per_job']:.0f} µs")
    if bookkeeping:
        print(
            f"worker: {result['raw_celery_tasks_per_s']:.0f} raw Celery no-ops/s, "
            f"{result['wrapped_jobs_per_s']:.0f} durable jobs/s: bookkeeping costs "
            f"{result['bookkeeping_cost']:.0%}"
        )
    if "bookkeeping_cpu_cost" in result:
        print(
            f"worker CPU: {result['raw_task_cpu_us']:.0f} µs per raw task, "
            f"{result['wrapped_job_cpu_us']:.0f} µs per durable job: bookkeeping takes "
            f"{result['bookkeeping_cpu_cost']:.0%} of a job's CPU"
        )
    print(json.dumps(result))
    if result["lost"] or result["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
