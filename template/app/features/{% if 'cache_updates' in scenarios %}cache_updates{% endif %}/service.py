"""Items in the database, read through the cache; the stats aggregate computed once per change."""

import asyncio
import logging
import random
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.database import session_scope, utcnow
from app.core.events import announce
from app.features.cache_updates.cache import Cache, CacheUnavailable
from app.features.cache_updates.config import get_cache_settings
from app.features.cache_updates.metrics import (
    CACHE_HITS,
    CACHE_MISSES,
    CACHE_REFRESHES,
    STATS_COMPUTATIONS,
)
from app.features.cache_updates.models import Item, ItemWrites
from app.features.cache_updates.schemas import ItemIn, ItemRead, ItemStats
from app.jobs.service import QueuedJob
from app.tasks import Task, stage

logger = logging.getLogger(__name__)

Entry = Literal["item", "stats"]
CENT = Decimal("0.01")


def item_key(item_id: int) -> str:
    return f"{get_cache_settings().key_prefix}item:{item_id}"


def stats_key() -> str:
    return f"{get_cache_settings().key_prefix}stats"


def entry_ttl() -> float:
    settings = get_cache_settings()
    return settings.ttl_seconds * (1 + random.uniform(0, settings.ttl_jitter))


def to_cents(price: Decimal) -> int:
    return int(price.scaleb(2))  # exact: prices carry at most two decimals


def from_cents(cents: Any) -> Decimal:
    return (Decimal(str(cents)) / 100).quantize(CENT, ROUND_HALF_UP)


# --- The database: the source of truth -------------------------------------------------


def count_write(session: Session) -> None:
    """Count one more write to items, in the writer's transaction (the stats' version)."""
    session.execute(update(ItemWrites).values(total=ItemWrites.total + 1))


def create_item(data: ItemIn, refresh: Task) -> tuple[ItemRead, QueuedJob]:
    """Insert an item and the job refreshing the stats after it (`refresh`), in one transaction.

    Both commit or neither does: a crash cannot leave a new item the cached stats never count.
    """
    with session_scope() as session:
        item = Item(name=data.name, price_cents=to_cents(data.price), version=1)
        session.add(item)
        session.flush()
        count_write(session)
        job = stage(session, refresh)
        return ItemRead.model_validate(item), job


def update_item(item_id: int, data: ItemIn) -> ItemRead | None:
    """Replace the item, bumping its version in the same statement (no lost increments)."""
    with session_scope() as session:
        item = session.scalars(
            update(Item)
            .where(Item.id == item_id)
            .values(name=data.name, price_cents=to_cents(data.price), version=Item.version + 1)
            .returning(Item)
        ).one_or_none()
        if item is None:
            return None
        count_write(session)
        updated = ItemRead.model_validate(item)
        announce(session, "item.updated", updated.model_dump(mode="json"))
        return updated


def get_item(item_id: int) -> ItemRead | None:
    with session_scope() as session:
        item = session.get(Item, item_id)
        return None if item is None else ItemRead.model_validate(item)


def compute_stats() -> ItemStats:
    """The expensive aggregate. One statement, so its version describes exactly its data."""
    STATS_COMPUTATIONS.inc()
    with session_scope() as session:
        count, total, average, lowest, highest, version = session.execute(
            select(
                func.count(Item.id),
                func.coalesce(func.sum(Item.price_cents), 0),
                func.avg(Item.price_cents),
                func.min(Item.price_cents),
                func.max(Item.price_cents),
                select(ItemWrites.total).scalar_subquery(),
            )
        ).one()
    return ItemStats(
        count=count,
        total_value=from_cents(total),
        average_price=None if average is None else from_cents(average),
        min_price=None if lowest is None else from_cents(lowest),
        max_price=None if highest is None else from_cents(highest),
        version=version,
        computed_at=utcnow(),
    )


# --- Reads through the cache --------------------------------------------------------


async def cached(cache: Cache, entry: Entry, key: str) -> Any | None:
    """The cached value, or None; an unreachable cache is a miss, never an error."""
    try:
        value = await cache.get(key)
    except CacheUnavailable as exc:
        logger.warning("cache unavailable, reading the database: %s", exc)
        value = None
    (CACHE_MISSES if value is None else CACHE_HITS).labels(entry).inc()
    return value


async def remember(cache: Cache, key: str, value: ItemRead | ItemStats) -> None:
    """Fill the cache after a miss; a newer value already there wins."""
    try:
        await cache.set_if_newer(key, value.model_dump(mode="json"), value.version, entry_ttl())
    except CacheUnavailable as exc:
        logger.warning("cache unavailable, not caching %s: %s", key, exc)


async def read_item(cache: Cache, item_id: int) -> tuple[ItemRead | None, bool]:
    """Cache-aside: the cached item when there is one, else the row (then cached)."""
    key = item_key(item_id)
    value = await cached(cache, "item", key)
    if value is not None:
        return ItemRead.model_validate(value), True
    item = await run_in_threadpool(get_item, item_id)
    if item is not None:
        await remember(cache, key, item)
    return item, False


async def read_stats(cache: Cache) -> tuple[ItemStats, bool]:
    """The cached stats; on a miss, computed by one reader while the others wait for it."""
    key = stats_key()
    value = await cached(cache, "stats", key)
    if value is not None:
        return ItemStats.model_validate(value), True
    try:
        return await compute_stats_once(cache, key), False
    except CacheUnavailable as exc:
        logger.warning("cache unavailable, computing the stats without it: %s", exc)
        return await run_in_threadpool(compute_stats), False


async def compute_stats_once(cache: Cache, key: str) -> ItemStats:
    """Single flight: whoever takes the lock computes, the rest poll for its result.

    The lock is a key in the cache itself, so it holds across API processes (Redis);
    it expires after CACHE_LOCK_SECONDS, so a reader that died cannot block the others.
    """
    lock, token = f"{key}:lock", uuid.uuid4().hex
    pause = 0.01
    while True:
        if await cache.add(lock, token, get_cache_settings().lock_seconds):
            try:
                # The previous holder may have stored a result between our miss and our lock.
                value = await cache.get(key)
                if value is not None:
                    return ItemStats.model_validate(value)
                stats = await run_in_threadpool(compute_stats)
                await remember(cache, key, stats)
                return stats
            finally:
                await cache.delete_if(lock, token)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.2)
        value = await cache.get(key)
        if value is not None:
            return ItemStats.model_validate(value)


# --- Background refreshes after writes -------------------------------------------------


async def forget_item(cache: Cache, item_id: int) -> None:
    """Drop the item's and the stats' entries, when no job will refresh them after a write.

    Best effort: the write succeeded either way; entries an unreachable cache still holds
    expire with their TTL, as they would have without this.
    """
    try:
        await cache.delete(item_key(item_id), stats_key())
    except CacheUnavailable as exc:
        logger.warning("cache unavailable, could not drop item %s: %s", item_id, exc)


async def refresh(cache: Cache, entry: Entry, key: str, value: ItemRead | ItemStats) -> bool:
    """Write a fresh value unless the cache holds this version or newer (errors: job retried)."""
    stored = await cache.set_if_newer(
        key, value.model_dump(mode="json"), value.version, entry_ttl()
    )
    CACHE_REFRESHES.labels(entry, "stored" if stored else "skipped").inc()
    return stored


async def refresh_item(cache: Cache, item: ItemRead) -> bool:
    return await refresh(cache, "item", item_key(item.id), item)


async def refresh_stats(cache: Cache) -> ItemStats:
    stats = await run_in_threadpool(compute_stats)
    await refresh(cache, "stats", stats_key(), stats)
    return stats
