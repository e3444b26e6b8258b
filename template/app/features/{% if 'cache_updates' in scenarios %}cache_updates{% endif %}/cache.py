"""The cache behind a small async interface: in-process memory or Redis, chosen by CACHE_URL."""

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.features.cache_updates.config import get_cache_settings


class CacheUnavailable(Exception):
    """The cache could not be reached: readers fall back to the database, jobs retry."""


class Cache(Protocol):
    """What the feature needs from a cache: versioned entries with a TTL, and a lock."""

    async def get(self, key: str) -> Any | None:
        """The JSON value stored under `key`, or None when absent or expired."""

    async def set_if_newer(self, key: str, value: Any, version: int, ttl: float) -> bool:
        """Store `value` unless the entry already holds `version` or a newer one."""

    async def add(self, key: str, token: str, ttl: float) -> bool:
        """Store `token` only if `key` is absent (a lock that expires); True when stored."""

    async def delete_if(self, key: str, token: str) -> None:
        """Delete `key` if it still holds `token`, so one never releases another's lock."""

    async def delete(self, *keys: str) -> None:
        """Delete the entries under `keys` (absent ones are ignored)."""

    async def ping(self) -> bool:
        """Whether the cache answers (for /health)."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class _Entry:
    data: str
    version: int
    expires_at: float


class MemoryCache:
    """A dict behind a lock with per-entry expiry, shared by the API and its in-process work."""

    def __init__(self, max_entries: int) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    async def get(self, key: str) -> Any | None:
        with self._lock:
            entry = self._live(key, time.monotonic())
        return None if entry is None else json.loads(entry.data)

    async def set_if_newer(self, key: str, value: Any, version: int, ttl: float) -> bool:
        data = json.dumps(value)  # stored as text, like Redis: callers never share objects
        with self._lock:
            now = time.monotonic()
            current = self._live(key, now)
            if current is not None and current.version >= version:
                return False
            self._store(key, _Entry(data, version, now + ttl), now)
            return True

    async def add(self, key: str, token: str, ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is not None:
                return False
            self._store(key, _Entry(token, 0, now + ttl), now)
            return True

    async def delete_if(self, key: str, token: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.data == token:
                del self._entries[key]

    async def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    async def ping(self) -> bool:
        return True  # it lives in this process: if the process answers, so does the cache

    async def close(self) -> None:
        """Nothing to release: the entries live as long as the process."""

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _store(self, key: str, entry: _Entry, now: float) -> None:
        self._entries.pop(key, None)  # re-inserted last: dict order is the order of writes
        if len(self._entries) >= self._max_entries:
            for stale in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[stale]
            while len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[key] = entry


# Compare-and-set in one step: Redis runs a script without interleaving other commands,
# so two refreshes racing each other cannot both pass the version check.
SET_IF_NEWER = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version'))
if current and current >= tonumber(ARGV[1]) then
    return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise CacheUnavailable(f"Redis: {exc}") from exc


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisCache:
    """Entries are hashes {version, data} with a TTL; locks are `SET NX PX` keys."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._set_if_newer = client.register_script(SET_IF_NEWER)
        self._delete_if = client.register_script(DELETE_IF)

    async def get(self, key: str) -> Any | None:
        with _reachable():
            data = await self._client.hget(key, "data")
        return None if data is None else json.loads(data)

    async def set_if_newer(self, key: str, value: Any, version: int, ttl: float) -> bool:
        with _reachable():
            stored = await self._set_if_newer(
                keys=[key], args=[version, json.dumps(value), _milliseconds(ttl)]
            )
        return bool(stored)

    async def add(self, key: str, token: str, ttl: float) -> bool:
        with _reachable():
            return bool(await self._client.set(key, token, nx=True, px=_milliseconds(ttl)))

    async def delete_if(self, key: str, token: str) -> None:
        with _reachable():
            await self._delete_if(keys=[key], args=[token])

    async def delete(self, *keys: str) -> None:
        with _reachable():
            await self._client.delete(*keys)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()


def connect_redis(url: str) -> Redis:
    """A client for `url`; short timeouts, so a dead Redis costs a request little."""
    return Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=1.0
    )


@lru_cache
def memory_cache() -> MemoryCache:
    """The process's one in-memory cache (the API and its BackgroundTasks share it)."""
    return MemoryCache(get_cache_settings().max_entries)


@asynccontextmanager
async def open_cache() -> AsyncIterator[Cache]:
    """The cache at CACHE_URL; a Redis client is bound to the event loop that opened it."""
    settings = get_cache_settings()
    cache: Cache = memory_cache() if settings.in_memory else RedisCache(connect_redis(settings.url))
    try:
        yield cache
    finally:
        await cache.close()
