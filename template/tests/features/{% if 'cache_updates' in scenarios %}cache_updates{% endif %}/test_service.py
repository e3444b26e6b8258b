"""Reads through the cache, the stats' version, and how long entries live."""

import asyncio

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from sqlalchemy import select

from app.core.database import session_scope
from app.core.migrate import upgrade_to_heads
from app.features.cache_updates import service
from app.features.cache_updates.cache import RedisCache
from app.features.cache_updates.config import get_cache_settings
from app.features.cache_updates.models import Item
from app.features.cache_updates.schemas import ItemIn, ItemRead, ItemStats
from app.features.cache_updates.tasks import refresh_stats
from app.jobs.models import Job


def unreachable_redis() -> RedisCache:
    server = FakeServer()
    server.connected = False  # every command fails as if Redis were down
    return RedisCache(FakeAsyncRedis(server=server, decode_responses=True))


def test_reads_fall_back_to_the_database_when_the_cache_is_down() -> None:
    upgrade_to_heads()
    item, _ = service.create_item(ItemIn(name="Lamp", price=5), refresh_stats)

    async def read() -> tuple[tuple[ItemRead | None, bool], tuple[ItemStats, bool]]:
        cache = unreachable_redis()
        return await service.read_item(cache, item.id), await service.read_stats(cache)

    (found, item_hit), (stats, stats_hit) = asyncio.run(read())

    assert found == item
    assert stats.count == 1
    assert not item_hit
    assert not stats_hit


def test_stats_version_grows_with_every_write() -> None:
    upgrade_to_heads()
    empty = service.compute_stats()
    item, _ = service.create_item(ItemIn(name="Lamp", price=5), refresh_stats)
    created = service.compute_stats()
    service.update_item(item.id, ItemIn(name="Lamp", price=6))
    updated = service.compute_stats()

    assert empty.version < created.version < updated.version
    assert (empty.count, created.count) == (0, 1)


def test_an_item_and_its_stats_job_commit_together() -> None:
    upgrade_to_heads()

    item, job = service.create_item(ItemIn(name="Lamp", price=5), refresh_stats)

    with session_scope() as session:
        assert session.get(Item, item.id) is not None
        [row] = session.scalars(select(Job))
        assert (row.id, row.kind, row.status) == (job.id, refresh_stats.name, "queued")


def test_entry_lifetimes_spread_over_the_ttl_plus_its_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CACHE_TTL_SECONDS", "100")
    monkeypatch.setenv("CACHE_TTL_JITTER", "0.1")
    get_cache_settings.cache_clear()

    ttls = [service.entry_ttl() for _ in range(1000)]

    assert 100 <= min(ttls) <= max(ttls) <= 110
    # Spread over the whole range, so entries written together do not expire together.
    assert max(ttls) - min(ttls) > 8
    assert len(set(ttls)) > 900


def test_update_of_an_unknown_item_changes_nothing() -> None:
    upgrade_to_heads()

    assert service.update_item(999, ItemIn(name="Ghost", price=1)) is None
    assert service.compute_stats().count == 0
