"""`/items`: cache-aside reads, refresh after writes, single-flight stats, errors."""

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fakeredis import FakeServer
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.features.cache_updates import service
from app.features.cache_updates.schemas import ItemIn, ItemStats
from app.features.cache_updates.tasks import refresh_stats
from app.tasks import RUNS_IN_API_PROCESS
from tests.sample_work import queue_down

Create = Callable[..., dict[str, Any]]
Wait = Callable[..., dict[str, Any]]


def test_create_answers_201_with_location_and_the_stats_job(
    client: TestClient, wait_for_job: Wait
) -> None:
    response = client.post("/items", json={"name": "Desk lamp", "price": 24.5})

    assert response.status_code == 201
    body = response.json()
    assert {"id": body["id"], "name": "Desk lamp", "price": 24.5}.items() <= body.items()
    assert response.headers["Location"] == f"/items/{body['id']}"
    assert wait_for_job(body["job_id"])["status"] == "succeeded"


def test_first_read_misses_and_the_next_one_hits(client: TestClient, create_item: Create) -> None:
    item = create_item()

    first = client.get(f"/items/{item['id']}")
    second = client.get(f"/items/{item['id']}")

    assert first.headers["X-Cache"] == "miss"
    assert second.headers["X-Cache"] == "hit"
    assert first.json() == second.json() == {key: item[key] for key in first.json()}


def test_after_put_and_its_refresh_job_the_new_value_is_served_as_a_hit(
    client: TestClient, create_item: Create, wait_for_job: Wait
) -> None:
    item = create_item(name="Desk lamp", price=24.5)
    client.get(f"/items/{item['id']}")  # cached at version 1

    put = client.put(f"/items/{item['id']}", json={"name": "Floor lamp", "price": 80})
    job = wait_for_job(put.json()["job_id"])
    read = client.get(f"/items/{item['id']}")

    assert put.status_code == 200
    assert put.json()["name"] == "Floor lamp"
    assert put.json()["version"] == 2
    assert job["status"] == "succeeded"
    assert job["result"]["item_version"] == 2
    assert read.headers["X-Cache"] == "hit"
    assert read.json() == {"id": item["id"], "name": "Floor lamp", "price": 80.0, "version": 2}


def test_stats_reflect_a_write_once_its_job_finished(
    client: TestClient, create_item: Create, wait_for_job: Wait
) -> None:
    lamp = create_item(name="Lamp", price=10)
    wait_for_job(lamp["job_id"])
    wait_for_job(create_item(name="Desk", price=20)["job_id"])
    before = client.get("/items/stats").json()

    put = client.put(f"/items/{lamp['id']}", json={"name": "Lamp", "price": 40})
    wait_for_job(put.json()["job_id"])
    after = client.get("/items/stats")

    assert before["count"] == 2
    assert before["max_price"] == 20
    assert after.headers["X-Cache"] == "hit"  # recomputed by the job, not by this read
    assert after.json()["count"] == 2
    assert after.json()["max_price"] == 40
    assert after.json()["average_price"] == 30
    assert after.json()["total_value"] == 60
    assert after.json()["version"] > before["version"]


def test_stats_of_no_items_are_zero_and_empty(client: TestClient) -> None:
    response = client.get("/items/stats")

    assert response.headers["X-Cache"] == "miss"
    assert {"count": 0, "total_value": 0, "average_price": None, "max_price": None}.items() <= (
        response.json().items()
    )


def test_stats_of_items_at_the_largest_price_add_up_past_a_price_s_digits(
    client: TestClient, wait_for_job: Wait
) -> None:
    """Three prices of 12 digits sum to 13: stats declared like a price answered 500."""
    for _ in range(3):
        created = client.post("/items", json={"name": "Gold lamp", "price": "9999999999.99"})
        wait_for_job(created.json()["job_id"])

    response = client.get("/items/stats")

    assert response.status_code == 200
    assert response.json()["total_value"] == 29999999999.97
    assert response.json()["max_price"] == 9999999999.99


def test_concurrent_cold_reads_of_stats_compute_the_aggregate_once(
    client: TestClient,
    create_item: Create,
    wait_for_job: Wait,
    clear_cache: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for price in (10, 20, 30):
        wait_for_job(create_item(price=price)["job_id"])
    clear_cache()
    computations: list[float] = []
    compute = service.compute_stats

    def slow_compute() -> ItemStats:
        computations.append(time.monotonic())
        time.sleep(0.3)  # every request arrives while the first computation runs
        return compute()

    monkeypatch.setattr(service, "compute_stats", slow_compute)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: client.get("/items/stats"), range(8)))

    assert len(computations) == 1
    assert {response.status_code for response in responses} == {200}
    assert {response.json()["count"] for response in responses} == {3}
    assert client.get("/items/stats").headers["X-Cache"] == "hit"


def test_an_item_the_queue_cannot_take_now_is_kept_with_its_job_queued(
    client: TestClient,
) -> None:
    with queue_down(client):  # as on Celery with the broker down: the job waits for a sweep
        created = client.post("/items", json={"name": "Desk lamp", "price": 24.5})

    assert created.status_code == 201, created.text
    assert client.get(f"/jobs/{created.json()['job_id']}").json()["status"] == "queued"
    assert service.compute_stats().count == 1


@pytest.mark.skipif(not RUNS_IN_API_PROCESS, reason="on Celery a worker's sweep publishes it")
def test_an_item_whose_process_died_after_the_commit_still_gets_its_stats_refreshed(
    short_lease: float, client: TestClient, wait_for_job: Wait
) -> None:
    cached = client.get("/items/stats").json()  # cached while there was no item
    # What `POST /items` commits, never handed over: the state a process killed right
    # after the commit leaves. The live app takes the job over once its lease runs out.
    _, job = service.create_item(ItemIn(name="Lamp", price=10), refresh_stats)

    assert wait_for_job(str(job.id))["status"] == "succeeded"
    stats = client.get("/items/stats")
    assert cached["count"] == 0
    assert (stats.headers["X-Cache"], stats.json()["count"]) == ("hit", 1)


def test_a_put_whose_refresh_cannot_be_queued_drops_the_stale_entries(
    client: TestClient, create_item: Create, wait_for_job: Wait
) -> None:
    item = create_item(name="Lamp", price=10)
    wait_for_job(item["job_id"])
    client.get(f"/items/{item['id']}")  # both cached, at the price about to change
    client.get("/items/stats")

    with queue_down(client):
        refused = client.put(f"/items/{item['id']}", json={"name": "Lamp", "price": 40})
    read = client.get(f"/items/{item['id']}")
    stats = client.get("/items/stats")

    assert refused.status_code == 503  # the write itself stands: a PUT may simply be retried
    assert (read.headers["X-Cache"], read.json()["price"]) == ("miss", 40)
    assert (stats.headers["X-Cache"], stats.json()["max_price"]) == ("miss", 40)
    assert client.get(f"/items/{item['id']}").headers["X-Cache"] == "hit"


def test_unknown_item_is_404(client: TestClient) -> None:
    read = client.get("/items/999")
    update = client.put("/items/999", json={"name": "Ghost", "price": 1})

    assert read.status_code == update.status_code == 404
    assert read.json()["detail"] == "Item 999 not found"


@pytest.mark.parametrize(
    "body",
    [
        {"price": 1},
        {"name": "", "price": 1},
        {"name": "Lamp"},
        {"name": "Lamp", "price": -1},
        {"name": "Lamp", "price": 1.999},
        {"name": "Lamp", "price": "cheap"},
        {"name": "La\u0000mp", "price": 1},
        {"name": "   ", "price": 1},
        {"name": "L" * 201, "price": 1},
        {"name": "Lamp", "price": "10000000000"},
    ],
    ids=[
        "no-name",
        "empty-name",
        "no-price",
        "negative",
        "fraction-of-cent",
        "not-a-number",
        "nul-in-name",
        "blank-name",
        "name-longer-than-its-column",
        "price-beyond-its-digits",
    ],
)
def test_invalid_body_is_422(client: TestClient, create_item: Create, body: dict[str, Any]) -> None:
    item = create_item()

    assert client.post("/items", json=body).status_code == 422
    assert client.put(f"/items/{item['id']}", json=body).status_code == 422


def refuse_non_json_numbers(constant: str) -> None:
    raise AssertionError(f"the answer is not strict JSON: it holds {constant}")


def test_a_name_is_stored_without_surrounding_space_and_checked_after_stripping(
    client: TestClient,
) -> None:
    name = "L" * 200
    response = client.post("/items", json={"name": f"  {name}  ", "price": 1})

    assert response.status_code == 201
    assert response.json()["name"] == name


@pytest.mark.parametrize("price", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_price_json_cannot_carry_is_422_in_strict_json(
    client: TestClient, create_item: Create, price: str
) -> None:
    """Python's JSON parser reads these (1e400 as infinity); the answer must still be JSON."""
    item = create_item()
    body = '{"name": "Lamp", "price": ' + price + "}"
    headers = {"Content-Type": "application/json"}

    created = client.post("/items", content=body, headers=headers)
    replaced = client.put(f"/items/{item['id']}", content=body, headers=headers)

    assert created.status_code == replaced.status_code == 422
    detail = json.loads(created.text, parse_constant=refuse_non_json_numbers)["detail"]
    assert detail[0]["loc"] == ["body", "price"]


@pytest.mark.parametrize("item_id", ["not-a-number", "0", str(2**63)])
def test_malformed_or_out_of_range_id_is_422(client: TestClient, item_id: str) -> None:
    assert client.get(f"/items/{item_id}").status_code == 422
    assert client.put(f"/items/{item_id}", json={"name": "Lamp", "price": 1}).status_code == 422


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_hits_misses_and_refreshes(
    client: TestClient, create_item: Create, wait_for_job: Wait
) -> None:
    before = {
        "hits": sample("cache_hits_total", entry="item"),
        "misses": sample("cache_misses_total", entry="item"),
        "refreshes": sample("cache_refreshes_total", entry="item", outcome="stored"),
    }
    item = create_item()
    client.get(f"/items/{item['id']}")
    client.get(f"/items/{item['id']}")
    put = client.put(f"/items/{item['id']}", json={"name": "Lamp", "price": 3})
    wait_for_job(put.json()["job_id"])

    assert sample("cache_hits_total", entry="item") == before["hits"] + 1
    assert sample("cache_misses_total", entry="item") == before["misses"] + 1
    assert (
        sample("cache_refreshes_total", entry="item", outcome="stored") == before["refreshes"] + 1
    )
    assert "cache_refreshes_total" in client.get("/metrics").text


def test_health_reports_a_redis_cache_that_stops_answering(
    client: TestClient, cache_url: str, redis_server: FakeServer
) -> None:
    assert client.get("/health").json()["components"]["cache"] == "ok"

    redis_server.connected = False  # Redis goes away; the in-process cache cannot

    health = client.get("/health")
    if cache_url == "memory://":
        assert (health.status_code, health.json()["components"]["cache"]) == (200, "ok")
    else:
        assert (health.status_code, health.json()["components"]["cache"]) == (503, "down")
