"""Prometheus metrics shared by the service; multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set."""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

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


def metrics_registry() -> CollectorRegistry:
    """This process's metrics, or those of every process sharing the multiprocess dir."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render_metrics() -> tuple[bytes, str]:
    """The text exposition of `metrics_registry()`."""
    return generate_latest(metrics_registry()), CONTENT_TYPE_LATEST
