"""Reads through the cache: the database answers when the cache cannot."""

import asyncio

from fakeredis import FakeAsyncRedis, FakeServer

from app.core.database import init_db
from app.features.cache_updates import service
from app.features.cache_updates.cache import RedisCache
from app.features.cache_updates.schemas import ItemIn


def unreachable_redis() -> RedisCache:
    server = FakeServer()
    server.connected = False  # every command fails as if Redis were down
    return RedisCache(FakeAsyncRedis(server=server, decode_responses=True))


def test_reads_fall_back_to_the_database_when_the_cache_is_down() -> None:
    init_db()
    item = service.create_item(ItemIn(name="Lamp", price=5))

    async def read() -> tuple[object, object]:
        cache = unreachable_redis()
        return await service.read_item(cache, item.id), await service.read_stats(cache)

    (found, item_hit), (stats, stats_hit) = asyncio.run(read())

    assert found == item
    assert stats.count == 1
    assert not item_hit
    assert not stats_hit


def test_stats_version_grows_with_every_write() -> None:
    init_db()
    empty = service.compute_stats()
    item = service.create_item(ItemIn(name="Lamp", price=5))
    created = service.compute_stats()
    service.update_item(item.id, ItemIn(name="Lamp", price=6))
    updated = service.compute_stats()

    assert empty.version < created.version < updated.version


def test_update_of_an_unknown_item_changes_nothing() -> None:
    init_db()

    assert service.update_item(999, ItemIn(name="Ghost", price=1)) is None
    assert service.compute_stats().count == 0
