"""Conversation records and the log-analysis endpoints over HTTP."""

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

WaitForJob = Callable[..., dict[str, Any]]
InsertRecords = Callable[[list[dict[str, Any]]], None]


def post_message(client: TestClient, conversation: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/conversations/{conversation}/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_messages_come_back_in_the_order_they_were_sent(
    client: TestClient, wait_for_job: WaitForJob
) -> None:
    sent = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Calling a tool.", "metadata": {"tool": "weather"}},
        {"role": "tool", "content": '{"celsius": 21}'},
        {"role": "assistant", "content": "21 °C."},
    ]
    accepted = [post_message(client, "agent-run-1", **message) for message in sent]
    jobs = [wait_for_job(answer["job_id"]) for answer in accepted]

    page = client.get("/conversations/agent-run-1/messages").json()

    assert {job["status"] for job in jobs} == {"succeeded"}
    assert page["total"] == 5
    assert [item["id"] for item in page["items"]] == [answer["id"] for answer in accepted]
    assert [(item["role"], item["content"]) for item in page["items"]] == [
        (message["role"], message["content"]) for message in sent
    ]
    assert page["items"][2]["metadata"] == {"tool": "weather"}


def test_messages_are_paginated_and_kept_per_conversation(
    client: TestClient, wait_for_job: WaitForJob
) -> None:
    accepted = [post_message(client, "paged", role="user", content=f"m{n}") for n in range(5)]
    accepted.append(post_message(client, "other", role="user", content="elsewhere"))
    for answer in accepted:
        wait_for_job(answer["job_id"])

    page = client.get("/conversations/paged/messages", params={"limit": 2, "offset": 1}).json()

    assert [item["content"] for item in page["items"]] == ["m1", "m2"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)


def test_unknown_conversation_is_an_empty_page(client: TestClient) -> None:
    page = client.get("/conversations/never-used/messages").json()

    assert (page["items"], page["total"]) == ([], 0)


@pytest.mark.parametrize(
    "body",
    [
        {"role": "robot", "content": "hello"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "   \n"},
        {"role": "user"},
        {"role": "user", "content": "hi", "metdata": {"typo": True}},
        {"role": "user", "content": "hi", "metadata": ["not", "an", "object"]},
    ],
)
def test_invalid_message_is_refused_with_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/conversations/c1/messages", json=body)

    assert response.status_code == 422
    assert response.json()["detail"]


def test_unsafe_conversation_id_is_refused_with_422(client: TestClient) -> None:
    response = client.post(
        "/conversations/has space/messages", json={"role": "user", "content": "x"}
    )

    assert response.status_code == 422


def test_job_log_lines_carry_the_request_id_that_enqueued_it(
    client: TestClient, wait_for_job: WaitForJob, json_logs: list[dict[str, Any]]
) -> None:
    response = client.post(
        "/conversations/traced/messages",
        json={"role": "user", "content": "trace me"},
        headers={"X-Request-ID": "agent-step-7"},
    )
    job_id = response.json()["job_id"]
    wait_for_job(job_id)

    job_lines = [line for line in json_logs if line.get("job_id") == job_id]
    saved = [line for line in job_lines if line["message"] == "conversation message saved"]
    stored = client.get("/conversations/traced/messages").json()["items"][0]

    assert len(saved) == 1
    assert {line["request_id"] for line in job_lines} == {"agent-step-7"}
    assert stored["request_id"] == "agent-step-7"


def test_request_records_can_be_filtered_by_path_status_and_since(
    client: TestClient, wait_for_records: Callable[..., list[dict[str, Any]]]
) -> None:
    client.get("/jobs/00000000-0000-0000-0000-000000000000")
    client.get("/health")
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    [not_found] = wait_for_records(client, status=404, since=since)
    [health] = wait_for_records(client, path="/health")
    future = client.get("/logs/requests", params={"since": "2999-01-01T00:00:00Z"}).json()

    assert not_found["route"] == "/jobs/{job_id}"
    assert health["status"] == 200
    assert future["items"] == []


def test_stats_give_exact_nearest_rank_percentiles_per_route(
    client: TestClient, insert_records: InsertRecords
) -> None:
    now = datetime.now(UTC)
    slow = [float(ms) for ms in range(1, 101)]  # 1..100 ms: p50 50, p95 95, p99 99
    random.shuffle(slow)
    records = [
        {"route": "/slow/{id}", "latency_ms": ms, "status": 500 if ms <= 5 else 200} for ms in slow
    ]
    records += [
        {"route": "/fast", "method": "POST", "latency_ms": ms} for ms in (4.0, 1.0, 3.0, 2.0)
    ]
    # Outside the window: must not count.
    records.append(
        {
            "route": "/fast",
            "method": "POST",
            "latency_ms": 999.0,
            "created_at": now - timedelta(hours=2),
        }
    )
    insert_records(records)

    stats = client.get("/logs/stats", params={"window_seconds": 3600}).json()
    by_route = {(item["method"], item["route"]): item for item in stats["items"]}

    assert stats["window_seconds"] == 3600
    assert by_route["GET", "/slow/{id}"] == {
        "method": "GET",
        "route": "/slow/{id}",
        "count": 100,
        "errors": 5,
        "error_rate": 0.05,
        "p50_ms": 50.0,
        "p95_ms": 95.0,
        "p99_ms": 99.0,
    }
    fast = by_route["POST", "/fast"]
    assert (fast["count"], fast["errors"], fast["error_rate"]) == (4, 0, 0.0)
    assert (fast["p50_ms"], fast["p95_ms"], fast["p99_ms"]) == (2.0, 4.0, 4.0)


@pytest.mark.parametrize("window", [0, -5, 10**9, "soon"])
def test_stats_window_out_of_range_is_refused_with_422(client: TestClient, window: Any) -> None:
    assert client.get("/logs/stats", params={"window_seconds": window}).status_code == 422


def test_metrics_expose_the_recorder_counters(client: TestClient) -> None:
    body = client.get("/metrics").text

    assert "# TYPE request_log_records_dropped_total counter" in body
    assert "# TYPE request_log_records_written_total counter" in body
