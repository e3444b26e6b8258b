"""`GET /health` and `GET /metrics`."""

from fastapi.testclient import TestClient


def test_health_reports_each_component(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["database"] == "ok"


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE jobs_total counter" in response.text
    assert "# TYPE job_duration_seconds histogram" in response.text
