"""Both caches: versioned writes, expiry, deletion and the lock."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.features.cache_updates.cache import Cache, MemoryCache, open_cache

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
        # A whole second to read it back fresh: a loaded machine once took over 50 ms.
        await cache.set_if_newer("k", [1, 2], 1, 1.0)
        fresh = await cache.get("k")
        await asyncio.sleep(1.1)
        return fresh, await cache.get("k")

    assert with_cache(use) == ([1, 2], None)


def test_deleted_entries_are_gone_and_absent_keys_are_ignored() -> None:
    async def use(cache: Cache) -> list[object]:
        for key in ("a", "b", "c"):
            await cache.set_if_newer(key, key, 5, 60)
        await cache.delete("a", "b", "never-stored")
        return [await cache.get(key) for key in ("a", "b", "c")]

    assert with_cache(use) == [None, None, "c"]


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
