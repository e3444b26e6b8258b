"""HTTP metrics: labelled by route template and status class, with a bounded label set."""

import json
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.core.metrics import UNMATCHED_ROUTE
from app.core.tracing import tracing_enabled
from bench.observability import main


def requests_count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


def series(name: str) -> set[tuple[tuple[str, str], ...]]:
    """Every label set a metric has in this process."""
    return {
        tuple(sorted(sample.labels.items()))
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name
    }


def test_requests_are_labelled_by_route_template_not_path(client: TestClient) -> None:
    before = requests_count("/jobs/{job_id}", "GET", "4xx")
    job_ids = [str(uuid.uuid4()) for _ in range(3)]
    for job_id in job_ids:
        assert client.get(f"/jobs/{job_id}").status_code == 404

    assert requests_count("/jobs/{job_id}", "GET", "4xx") == before + 3
    text = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/jobs/{job_id}",status="4xx"}' in text
    assert 'http_request_duration_seconds_count{method="GET",route="/jobs/{job_id}"}' in text
    assert not any(job_id in text for job_id in job_ids)


def test_status_class_of_success_and_server_error(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, FastAPI)

    @app.get("/boom/{n}")
    async def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    ok_before = requests_count("/health", "GET", "2xx")
    error_before = requests_count("/boom/{n}", "GET", "5xx")
    assert client.get("/health").status_code == 200
    with TestClient(app, raise_server_exceptions=False) as raw:
        assert raw.get("/boom/1").status_code == 500

    assert requests_count("/health", "GET", "2xx") == ok_before + 1
    assert requests_count("/boom/{n}", "GET", "5xx") == error_before + 1
    assert REGISTRY.get_sample_value("http_requests_in_flight") == 0


def test_a_thousand_distinct_paths_add_no_label_values(client: TestClient) -> None:
    client.get("/no/such/path/warm-up")  # the unmatched series exists from here on
    known = series("http_requests_total") | series("http_request_duration_seconds_bucket")
    before = requests_count(UNMATCHED_ROUTE, "GET", "4xx")

    for n in range(1000):
        assert client.get(f"/no/such/path/{uuid.uuid4()}/{n}").status_code == 404

    assert requests_count(UNMATCHED_ROUTE, "GET", "4xx") == before + 1000
    after = series("http_requests_total") | series("http_request_duration_seconds_bucket")
    assert after == known


def test_unknown_methods_share_one_label(client: TestClient) -> None:
    before = requests_count(UNMATCHED_ROUTE, "OTHER", "4xx") + requests_count(
        "/health", "OTHER", "4xx"
    )
    for verb in ("BREW", "WHEN", "PROPFIND"):
        client.request(verb, "/health")

    after = requests_count(UNMATCHED_ROUTE, "OTHER", "4xx") + requests_count(
        "/health", "OTHER", "4xx"
    )
    assert after == before + 3


def test_the_middleware_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """It still runs and reports each figure (not a test of speed: no figure is judged)."""
    figures = main(["--smoke"])

    assert set(figures) == {
        "bare_cpu_us",
        "metrics_cpu_us",
        "metrics_overhead_cpu_us",
        "traced_cpu_us",
        "tracing_overhead_cpu_us",
        "job_hooks_tracing_off_cpu_ns",
    }
    assert figures["bare_cpu_us"] > 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == figures
    assert not tracing_enabled()  # it leaves the process as it found it
