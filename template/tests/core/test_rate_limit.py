"""Rate limits on endpoints that create work: 429 with Retry-After, per key or per address."""

import importlib.util
import logging
import time
from functools import lru_cache
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic_settings import BaseSettings

from app.core import config
from app.core.config import get_rate_limit_settings
from app.core.rate_limit import storage_url, without_password
from tests.conftest import Keys
from tests.sample_work import create_sample_app

HAS_REDIS_CLIENT = importlib.util.find_spec("redis") is not None


@pytest.fixture
def limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """RATE_LIMIT set to a few requests a minute; returns how many."""
    monkeypatch.setenv("RATE_LIMIT", "3/minute")
    get_rate_limit_settings.cache_clear()
    return 3


def enqueue(client: TestClient, headers: dict[str, str] | None = None) -> Any:
    return client.post("/samples/sleep", json={"seconds": 0}, headers=headers)


def decisions(decision: str) -> float:
    return REGISTRY.get_sample_value("rate_limit_decisions_total", {"decision": decision}) or 0.0


def test_work_past_the_limit_is_refused_with_429_and_retry_after(limit: int) -> None:
    with TestClient(create_sample_app()) as client:
        accepted = [enqueue(client).status_code for _ in range(limit)]
        refused = enqueue(client)

    assert accepted == [202] * limit
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "3 per 1 minute" in refused.json()["detail"]


def test_the_limit_holds_across_a_minute_boundary(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The requests straddle the turn of a clock minute: a count per calendar window would
    # forget (or, weighted and floored, under-count) the ones before it.
    clock = [(time.time() // 60 + 1) * 60 - 0.5]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    with TestClient(create_sample_app()) as client:
        before = [enqueue(client).status_code for _ in range(limit)]
        clock[0] += 1.0
        after = enqueue(client)

    assert before == [202] * limit
    assert after.status_code == 429


def test_each_key_has_its_own_budget(
    limit: int, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "another-client-key-" + "z" * 8
    monkeypatch.setenv("API_KEYS", f"{keys.client},{other}")
    config.get_security_settings.cache_clear()
    with TestClient(create_sample_app()) as client:
        first = [enqueue(client, keys.auth(keys.client)).status_code for _ in range(limit + 1)]
        second = enqueue(client, keys.auth(other)).status_code

    assert first == [202] * limit + [429]
    assert second == 202


def test_without_keys_each_client_address_has_its_own_budget(limit: int) -> None:
    app = create_sample_app()
    with (
        TestClient(app, client=("192.0.2.1", 50000)) as one,
        TestClient(app, client=("192.0.2.2", 50000)) as two,
    ):
        first = [enqueue(one).status_code for _ in range(limit + 1)]
        second = enqueue(two).status_code

    assert first == [202] * limit + [429]
    assert second == 202


def test_reading_is_not_limited(limit: int) -> None:
    with TestClient(create_sample_app()) as client:
        job_ids = [enqueue(client).json()["job_id"] for _ in range(limit)]
        reads = [client.get(f"/jobs/{job_ids[0]}").status_code for _ in range(limit * 3)]

    assert set(reads) == {200}


def test_a_bad_rate_limit_stops_start_up_saying_how_to_write_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RATE_LIMIT", "sixty a minute")
    get_rate_limit_settings.cache_clear()

    with pytest.raises(SystemExit) as stopped:
        create_sample_app()

    assert str(stopped.value) == (
        "invalid configuration: RATE_LIMIT='sixty a minute': not a rate limit: "
        "write it like 60/minute, or 10/second;1000/hour"
    )


class _BrokerSettings(BaseSettings):
    @property
    def shared_redis_url(self) -> str | None:
        return "redis://broker.internal:6379/0"


@lru_cache
def _get_broker_settings() -> _BrokerSettings:
    return _BrokerSettings()


def test_counts_go_to_the_redis_the_service_already_has(monkeypatch: pytest.MonkeyPatch) -> None:
    config.registered_getters()  # the features' own settings first registered, then ours first
    monkeypatch.setattr(config, "_GETTERS", [_get_broker_settings, *config._GETTERS])
    monkeypatch.setenv("RATE_LIMIT_STORAGE_URL", "")
    get_rate_limit_settings.cache_clear()
    offered = storage_url()
    monkeypatch.setenv("RATE_LIMIT_STORAGE_URL", "memory://")
    get_rate_limit_settings.cache_clear()

    assert offered == "redis://broker.internal:6379/0"
    assert storage_url() == "memory://"  # an explicit choice wins


def test_storage_urls_are_logged_without_their_password() -> None:
    assert without_password("redis://:s3cret@redis:6379/0") == "redis://redis:6379/0"
    assert without_password("memory://") == "memory://"


@pytest.mark.skipif(not HAS_REDIS_CLIENT, reason="this project has no Redis client")
def test_an_unreachable_counter_lets_work_through_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RATE_LIMIT_STORAGE_URL", "redis://127.0.0.1:9/0")  # nothing listens
    get_rate_limit_settings.cache_clear()
    before = decisions("unavailable")

    with TestClient(create_sample_app()) as client:
        response = enqueue(client)

    assert response.status_code == 202
    assert decisions("unavailable") == before + 1
    assert any(
        record.levelno == logging.WARNING and "rate limit storage unavailable" in record.message
        for record in caplog.records
    )
