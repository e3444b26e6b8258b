"""`python -m bench.observability`: the CPU each request spends in HTTP metrics and in tracing.

Calls a bare FastAPI endpoint through ASGI directly, in this process, with no server or
network in between, so the figures are the middleware's own: CPU microseconds per
request, bare, with `HttpMetricsMiddleware`, and with tracing on too (spans batched to an
exporter that drops them). Tracing off costs nothing to measure: its middleware is then not
in the stack. Prints a table, then one JSON object as its last line.
"""

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from starlette.types import ASGIApp, Message, Scope

from app.core.metrics import HttpMetricsMiddleware
from app.core.tracing import (
    TracingMiddleware,
    configure_tracing,
    current_traceparent,
    job_span,
    shutdown_tracing,
)


class DropSpans(SpanExporter):
    """Takes every batch and keeps nothing: the SDK's work is measured, not an export's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/widgets/{widget_id}")
    async def widget(widget_id: int) -> dict[str, int]:
        return {"id": widget_id}

    return app


async def drive(app: ASGIApp, requests: int) -> float:
    """CPU seconds (this process, all threads) that `requests` GETs of distinct ids take."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    started = time.process_time()
    for n in range(requests):
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/widgets/{n}",
            "raw_path": f"/widgets/{n}".encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
    return time.process_time() - started


def measure(apps: dict[str, ASGIApp], requests: int, rounds: int) -> dict[str, float]:
    """CPU microseconds per request of each app: the best of `rounds`, after a warm-up.

    The apps take turns within each round, so a machine busy with something else for a
    while slows them alike instead of whichever happened to run then.
    """
    best = dict.fromkeys(apps, float("inf"))
    for app in apps.values():
        asyncio.run(drive(app, min(requests, 500)))
    for _ in range(rounds):
        for name, app in apps.items():
            best[name] = min(best[name], asyncio.run(drive(app, requests)) / requests * 1e6)
    return best


def job_hooks_ns(calls: int) -> float:
    """CPU nanoseconds the tracing hooks of one job attempt take (enqueue and run)."""
    started = time.process_time()
    for _ in range(calls):
        with job_span("bench.noop", "job-id", current_traceparent()):
            pass
    return (time.process_time() - started) / calls * 1e9


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5_000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="a run of a second or so")
    args = parser.parse_args(argv)
    requests, rounds = (300, 1) if args.smoke else (args.requests, args.rounds)

    hooks_off = min(job_hooks_ns(requests * 10) for _ in range(rounds))

    # Tracing on for every variant: only the traced one has the middleware that uses it.
    configure_tracing(DropSpans())
    try:
        best = measure(
            {
                "bare": bare_app(),
                "metrics": HttpMetricsMiddleware(bare_app()),
                "traced": HttpMetricsMiddleware(TracingMiddleware(bare_app())),
            },
            requests,
            rounds,
        )
    finally:
        shutdown_tracing()
    bare, metrics, traced = best["bare"], best["metrics"], best["traced"]
    figures = {
        "bare_cpu_us": round(bare, 1),
        "metrics_cpu_us": round(metrics, 1),
        "metrics_overhead_cpu_us": round(metrics - bare, 1),
        "traced_cpu_us": round(traced, 1),
        "tracing_overhead_cpu_us": round(traced - metrics, 1),
        "job_hooks_tracing_off_cpu_ns": round(hooks_off),
    }
    print(f"CPU per request over {requests} requests, best of {rounds}:")
    print(f"  bare endpoint             {bare:8.1f} us")
    print(f"  + HTTP metrics            {metrics:8.1f} us  (+{metrics - bare:.1f})")
    print(f"  + tracing on (1 span)     {traced:8.1f} us  (+{traced - metrics:.1f})")
    print(f"tracing off: its hooks cost a job attempt {hooks_off:.0f} ns of CPU")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
