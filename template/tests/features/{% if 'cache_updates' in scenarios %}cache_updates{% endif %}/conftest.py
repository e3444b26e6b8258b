"""Each cache_updates test runs once per cache this backend allows, starting empty."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeRedis, FakeServer
from fastapi.testclient import TestClient

from app.features.cache_updates import cache
from app.features.cache_updates.config import get_cache_settings
from app.tasks import RUNS_IN_API_PROCESS

FAKE_REDIS_URL = "redis://fakeredis:6379/0"
# memory:// is only legal when the work runs in the API process; Redis always is.
CACHE_URLS = ["memory://", FAKE_REDIS_URL] if RUNS_IN_API_PROCESS else [FAKE_REDIS_URL]


@pytest.fixture
def redis_server() -> FakeServer:
    """One in-process Redis, shared by every client the API and the workers open."""
    return FakeServer()


@pytest.fixture(autouse=True, params=CACHE_URLS, ids=lambda url: url.partition(":")[0])
def cache_url(
    request: pytest.FixtureRequest, redis_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setattr(
        cache,
        "connect_redis",
        lambda _url: FakeAsyncRedis(server=redis_server, decode_responses=True),
    )
    monkeypatch.setenv("CACHE_URL", request.param)
    get_cache_settings.cache_clear()
    cache.memory_cache.cache_clear()
    yield request.param
    get_cache_settings.cache_clear()
    cache.memory_cache.cache_clear()


@pytest.fixture
def clear_cache(redis_server: FakeServer) -> Callable[[], None]:
    """Empty the cache, whichever it is, as an eviction or a restart would."""

    def clear() -> None:
        cache.memory_cache().clear()
        FakeRedis(server=redis_server).flushall()

    return clear


@pytest.fixture
def create_item(client: TestClient) -> Callable[..., dict[str, Any]]:
    """POST an item and return its JSON (the stats refresh job may still be running)."""

    def create(name: str = "Desk lamp", price: float = 24.5) -> dict[str, Any]:
        response = client.post("/items", json={"name": name, "price": price})
        assert response.status_code == 201, response.text
        item: dict[str, Any] = response.json()
        return item

    return create
