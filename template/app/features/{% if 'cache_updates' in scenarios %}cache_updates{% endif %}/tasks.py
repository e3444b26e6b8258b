"""Units of work: refresh cache entries after a write (idempotent: they copy the database)."""

from typing import Any

from fastapi.concurrency import run_in_threadpool

from app.features.cache_updates import service
from app.features.cache_updates.cache import open_cache
from app.tasks import PermanentError, task


@task("cache_updates.refresh_item")
async def refresh_item(item_id: int) -> dict[str, Any]:
    """Put the item's current row in the cache, then recompute the stats it changed."""
    item = await run_in_threadpool(service.get_item, item_id)
    if item is None:
        raise PermanentError(f"item {item_id} does not exist")
    async with open_cache() as cache:
        stored = await service.refresh_item(cache, item)
        stats = await service.refresh_stats(cache)
    return {
        "item_version": item.version,
        "item_cached": "stored" if stored else "skipped",
        "stats_version": stats.version,
    }


@task("cache_updates.refresh_stats")
async def refresh_stats() -> dict[str, Any]:
    """Recompute the stats after a new item, so readers keep getting hits."""
    async with open_cache() as cache:
        stats = await service.refresh_stats(cache)
    return {"stats_version": stats.version}
