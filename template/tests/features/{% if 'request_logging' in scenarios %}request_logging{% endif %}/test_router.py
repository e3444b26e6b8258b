"""Conversation records and the log-analysis endpoints over HTTP."""

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.features.request_logging.config import get_request_log_settings
from tests.sample_work import create_sample_app

WaitForJob = Callable[..., dict[str, Any]]
InsertRecords = Callable[[list[dict[str, Any]]], None]


def post_message(client: TestClient, conversation: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/conversations/{conversation}/messages", json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def test_messages_come_back_in_the_order_they_were_sent(
    client: TestClient, wait_for_job: WaitForJob
) -> None:
    sent: list[dict[str, Any]] = [
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
        {"role": "user", "content": "a\u0000b"},
    ],
)
def test_invalid_message_is_refused_with_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/conversations/c1/messages", json=body)

    assert response.status_code == 422
    assert response.json()["detail"]


def refuse_non_json_numbers(constant: str) -> None:
    raise AssertionError(f"the answer is not strict JSON: it holds {constant}")


@pytest.mark.parametrize(
    "metadata",
    ['{"score": NaN}', '{"score": Infinity}', '{"score": -Infinity}', '{"deep": [{"x": 1e400}]}'],
    ids=["nan", "infinity", "minus-infinity", "too-large-nested"],
)
def test_metadata_with_numbers_json_cannot_carry_is_refused_with_422(
    client: TestClient, metadata: str
) -> None:
    """Python's JSON parser reads these (1e400 as infinity); stored, they came back as null."""
    response = client.post(
        "/conversations/c1/messages",
        content='{"role": "user", "content": "hi", "metadata": ' + metadata + "}",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    [error] = json.loads(response.text, parse_constant=refuse_non_json_numbers)["detail"]
    assert error["loc"] == ["body", "metadata"]
    assert "NaN or infinite numbers" in error["msg"]


def test_metadata_larger_than_the_setting_is_refused_with_422(
    client: TestClient, request_log_settings: Callable[..., None], wait_for_job: WaitForJob
) -> None:
    request_log_settings(max_metadata_bytes=23)
    fits = {"note": "é" * 6}  # {"note":"éééééé"}: 11 bytes of ASCII and 6 two-byte letters
    too_large = {"note": "é" * 7}

    accepted = client.post(
        "/conversations/sized/messages", json={"role": "user", "content": "hi", "metadata": fits}
    )
    refused = client.post(
        "/conversations/sized/messages",
        json={"role": "user", "content": "hi", "metadata": too_large},
    )

    assert accepted.status_code == 202
    assert wait_for_job(accepted.json()["job_id"])["status"] == "succeeded"
    assert refused.status_code == 422
    assert "metadata must be at most 23 bytes as JSON, not 25" in refused.text


def test_metadata_is_bounded_by_default(client: TestClient) -> None:
    limit = get_request_log_settings().max_metadata_bytes
    over_the_limit = {"blob": "x" * limit}  # and well under MAX_REQUEST_BYTES

    response = client.post(
        "/conversations/c1/messages",
        json={"role": "user", "content": "hi", "metadata": over_the_limit},
    )

    assert response.status_code == 422
    assert f"metadata must be at most {limit} bytes" in response.text


TOO_LARGE = str(2**63)  # one more than the largest OFFSET SQLite or PostgreSQL takes


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"/logs/requests?offset={TOO_LARGE}", "less than or equal to"),
        ("/logs/requests?offset=99999999999999999999", "less than or equal to"),
        (f"/conversations/c1/messages?offset={TOO_LARGE}", "less than or equal to"),
        (f"/logs/stats?offset={TOO_LARGE}", "less than or equal to"),
        ("/logs/stats?limit=501", "less than or equal to"),
        ("/logs/requests?since=9999-12-31T23:59:59-12:00", "outside the years 1 to 9999"),
        ("/logs/requests?since=0001-01-01T00:00:00%2B12:00", "outside the years 1 to 9999"),
        ("/logs/requests?path=/a%00b", "NUL character"),
        ("/logs/requests?route=/jobs/%00", "NUL character"),
    ],
    ids=[
        "offset-past-64-bits",
        "offset-huge",
        "messages-offset",
        "stats-offset",
        "stats-limit",
        "since-after-9999-in-utc",
        "since-before-year-1-in-utc",
        "nul-in-path",
        "nul-in-route",
    ],
)
def test_out_of_range_or_unstorable_query_is_refused_with_422(
    client: TestClient, url: str, message: str
) -> None:
    response = client.get(url)

    assert response.status_code == 422
    assert message in response.json()["detail"][0]["msg"]


def test_the_largest_offset_is_an_empty_page(client: TestClient) -> None:
    page = client.get("/logs/requests", params={"offset": 2**63 - 1}).json()

    assert (page["items"], page["offset"]) == ([], 2**63 - 1)


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
    records: list[dict[str, Any]] = [
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
        "sampled": 100,
        "p50_ms": 50.0,
        "p95_ms": 95.0,
        "p99_ms": 99.0,
    }
    fast = by_route["POST", "/fast"]
    assert (fast["count"], fast["errors"], fast["error_rate"]) == (4, 0, 0.0)
    assert (fast["p50_ms"], fast["p95_ms"], fast["p99_ms"]) == (2.0, 4.0, 4.0)


def test_stats_percentiles_come_from_each_routes_most_recent_requests(
    insert_records: InsertRecords, request_log_settings: Callable[..., None]
) -> None:
    # No record of the test's own requests is written meanwhile.
    request_log_settings(stats_sample_size=10, flush_interval_seconds=3600)
    now = datetime.now(UTC)
    older = [
        {"latency_ms": 1000.0, "status": 500, "created_at": now - timedelta(minutes=30, seconds=n)}
        for n in range(20)
    ]
    recent = [
        {"latency_ms": float(ms), "created_at": now - timedelta(seconds=ms)} for ms in range(1, 11)
    ]
    insert_records(older + recent)

    with TestClient(create_sample_app()) as client:
        [stats] = client.get("/logs/stats").json()["items"]

    # Counted over the whole window; percentiles over the 10 most recent (1..10 ms).
    assert (stats["count"], stats["errors"], stats["sampled"]) == (30, 20, 10)
    assert (stats["p50_ms"], stats["p95_ms"], stats["p99_ms"]) == (5.0, 10.0, 10.0)


def test_stats_are_a_page_of_routes_busiest_first(
    insert_records: InsertRecords, request_log_settings: Callable[..., None]
) -> None:
    request_log_settings(flush_interval_seconds=3600)  # the test's own requests stay out
    insert_records(
        [{"route": "/one"}] + [{"route": "/three"}] * 3 + [{"route": None, "path": "/missing"}] * 2
    )

    with TestClient(create_sample_app()) as client:
        first = client.get("/logs/stats", params={"limit": 2}).json()
        rest = client.get("/logs/stats", params={"limit": 2, "offset": 2}).json()

    assert [(item["route"], item["count"]) for item in first["items"]] == [("/three", 3), (None, 2)]
    assert [(item["route"], item["count"]) for item in rest["items"]] == [("/one", 1)]
    assert (first["total"], first["limit"], first["offset"]) == (3, 2, 0)


@pytest.mark.parametrize("window", [0, -5, 10**9, "soon"])
def test_stats_window_out_of_range_is_refused_with_422(client: TestClient, window: Any) -> None:
    assert client.get("/logs/stats", params={"window_seconds": window}).status_code == 422


def test_metrics_expose_the_recorder_counters(client: TestClient) -> None:
    body = client.get("/metrics").text

    assert "# TYPE request_log_records_dropped_total counter" in body
    assert "# TYPE request_log_records_written_total counter" in body
