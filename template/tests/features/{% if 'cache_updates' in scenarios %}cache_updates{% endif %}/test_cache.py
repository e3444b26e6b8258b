"""Both caches: versioned writes, expiry, the lock, and the refusal of memory:// with Celery."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient

import app.tasks
from app.features.cache_updates.cache import (
    Cache,
    CacheMisconfigured,
    MemoryCache,
    check_cache_placement,
    open_cache,
)
from app.features.cache_updates.config import CacheSettings, get_cache_settings
from app.features.cache_updates.tasks import refresh_stats
from app.tasks import PermanentError
from tests.sample_work import create_sample_app

T = TypeVar("T")


def with_cache(use: Callable[[Cache], Awaitable[T]]) -> T:
    """Run `use` against the cache at CACHE_URL (each test runs on memory and Redis)."""

    async def run() -> T:
        async with open_cache() as cache:
            return await use(cache)

    return asyncio.run(run())


def test_an_older_version_never_replaces_a_newer_one() -> None:
    async def use(cache: Cache) -> tuple[list[bool], object]:
        writes = [
            await cache.set_if_newer("k", {"v": 2}, 2, 60),
            await cache.set_if_newer("k", {"v": 1}, 1, 60),  # arrives late
            await cache.set_if_newer("k", {"v": "again"}, 2, 60),  # same version
            await cache.set_if_newer("k", {"v": 3}, 3, 60),
        ]
        return writes, await cache.get("k")

    writes, value = with_cache(use)

    assert writes == [True, False, False, True]
    assert value == {"v": 3}


def test_entries_expire_after_their_ttl() -> None:
    async def use(cache: Cache) -> tuple[object, object]:
        await cache.set_if_newer("k", [1, 2], 1, 0.05)
        fresh = await cache.get("k")
        await asyncio.sleep(0.1)
        return fresh, await cache.get("k")

    assert with_cache(use) == ([1, 2], None)


def test_the_lock_has_one_holder_until_released_or_expired() -> None:
    async def use(cache: Cache) -> list[bool]:
        taken = [await cache.add("lock", "a", 60), await cache.add("lock", "b", 60)]
        await cache.delete_if("lock", "b")  # not b's lock: stays
        taken.append(await cache.add("lock", "b", 60))
        await cache.delete_if("lock", "a")
        taken.append(await cache.add("lock", "b", 0.05))
        await asyncio.sleep(0.1)
        taken.append(await cache.add("lock", "c", 60))  # b's lock expired
        return taken

    assert with_cache(use) == [True, False, False, True, True]


def test_memory_cache_keeps_at_most_max_entries_dropping_the_oldest() -> None:
    memory = MemoryCache(max_entries=2)

    async def use() -> list[object]:
        for n in range(3):
            await memory.set_if_newer(f"k{n}", n, 1, 60)
        return [await memory.get(f"k{n}") for n in range(3)]

    assert asyncio.run(use()) == [None, 1, 2]


def test_memory_cache_is_refused_when_workers_run_in_other_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.tasks, "RUNS_IN_API_PROCESS", False)

    with pytest.raises(CacheMisconfigured) as refused:
        check_cache_placement(CacheSettings(url="memory://"))

    message = str(refused.value)
    assert "Celery worker processes, which cannot update that memory" in message
    assert "set CACHE_URL=redis://localhost:6379/1" in message


def test_redis_is_accepted_with_workers_in_other_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.tasks, "RUNS_IN_API_PROCESS", False)

    check_cache_placement(CacheSettings(url="redis://localhost:6379/1"))


def test_memory_cache_is_accepted_when_work_runs_in_the_api_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.tasks, "RUNS_IN_API_PROCESS", True)

    check_cache_placement(CacheSettings(url="memory://"))


def test_the_service_refuses_to_start_with_a_cache_its_workers_cannot_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.tasks, "RUNS_IN_API_PROCESS", False)
    monkeypatch.setenv("CACHE_URL", "memory://")
    get_cache_settings.cache_clear()

    with pytest.raises(CacheMisconfigured), TestClient(create_sample_app()):
        pass


def test_a_worker_left_on_memory_fails_its_refresh_jobs_permanently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API may be on Redis while a worker's environment lacks CACHE_URL."""
    monkeypatch.setattr(app.tasks, "RUNS_IN_API_PROCESS", False)
    monkeypatch.setenv("CACHE_URL", "memory://")
    get_cache_settings.cache_clear()

    with pytest.raises(PermanentError, match="CACHE_URL=redis://localhost:6379/1"):
        asyncio.run(refresh_stats())
