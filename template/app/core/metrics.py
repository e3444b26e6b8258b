"""Prometheus metrics shared by the service; multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set."""

import os
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JOBS = Counter(
    "jobs",
    "Background jobs by kind and the status they reached",
    ["kind", "status"],
)
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "Time spent running one attempt of a job",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route template, method and status class",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# livesum: with several processes, the sum over those alive (a dead one's figure would lie).
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "HTTP requests being answered now",
    multiprocess_mode="livesum",
)

UNMATCHED_ROUTE = "<unmatched>"  # every path no route matches: one label, however many paths
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The template of the route that answered (`/jobs/{job_id}`), never the raw path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Counts requests, times them and tracks those in flight, labelled by route template.

    Written here rather than taken from an instrumentation library: it is a few lines of
    pure ASGI (no `BaseHTTPMiddleware`), and it labels by the route Starlette matched,
    which it finds in the scope after routing, so ids in paths never become label values.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled series of each (route, method, status class), looked up once: a
        # `labels()` call takes a lock and checks its values, each time. Bounded, as the
        # label values are.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def series(self, route: str, method: str, status_class: int) -> tuple[Counter, Histogram]:
        key = (route, method, status_class)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = (
                HTTP_REQUESTS.labels(route, method, f"{status_class}xx"),
                HTTP_DURATION.labels(route, method),
            )
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            HTTP_IN_FLIGHT.dec()
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            requests, duration = self.series(route_template(scope), method, status // 100)
            requests.inc()
            duration.observe(time.perf_counter() - started)


def metrics_registry() -> CollectorRegistry:
    """This process's metrics, or those of every process sharing the multiprocess dir."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render_metrics(scraped_now: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The text exposition of `metrics_registry()`, then of collectors read at each scrape.

    Those (the queue's backlog) describe shared state, not this process: they are asked
    by the API's /metrics only, so a worker's metrics port does not report them twice.
    """
    body = generate_latest(metrics_registry())
    for collector in scraped_now:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        body += generate_latest(registry)
    return body, CONTENT_TYPE_LATEST
