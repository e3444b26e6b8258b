"""Refresh units: they copy the database into the cache, and never let an older copy win."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.features.cache_updates import service
from app.features.cache_updates.schemas import ItemRead
from app.features.cache_updates.tasks import refresh_item
from app.tasks import PermanentError

Create = Callable[..., dict[str, Any]]
Wait = Callable[..., dict[str, Any]]


def test_an_older_refresh_finishing_last_does_not_resurrect_stale_data(
    client: TestClient, create_item: Create, wait_for_job: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    item_id = create_item(name="v1")["id"]
    older = client.put(f"/items/{item_id}", json={"name": "v2", "price": 2}).json()
    wait_for_job(older["job_id"])
    newer = client.put(f"/items/{item_id}", json={"name": "v3", "price": 3}).json()
    wait_for_job(newer["job_id"])

    # The refresh after v2 read its row before v3 was written, and only now writes it.
    monkeypatch.setattr(service, "get_item", lambda _id: ItemRead.model_validate(older))
    late = asyncio.run(refresh_item(item_id=item_id))
    read = client.get(f"/items/{item_id}")

    assert late["item_cached"] == "skipped"
    assert read.headers["X-Cache"] == "hit"
    assert read.json()["name"] == "v3"
    assert read.json()["version"] == 3


def test_a_refresh_run_twice_leaves_the_same_entry(
    client: TestClient, create_item: Create, wait_for_job: Wait
) -> None:
    item_id = create_item()["id"]
    put = client.put(f"/items/{item_id}", json={"name": "Lamp", "price": 9})
    wait_for_job(put.json()["job_id"])

    again = asyncio.run(refresh_item(item_id=item_id))  # a redelivered job
    read = client.get(f"/items/{item_id}")

    assert again["item_cached"] == "skipped"
    assert read.headers["X-Cache"] == "hit"
    assert read.json()["price"] == 9


def test_refreshing_an_unknown_item_fails_permanently(client: TestClient) -> None:
    with pytest.raises(PermanentError, match="item 999 does not exist"):
        asyncio.run(refresh_item(item_id=999))
