"""`/items`: create, read through the cache, update (cache refreshed in the background), stats."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from app.core.rate_limit import RateLimit
from app.core.router import health_check
from app.core.security import ClientScope
from app.features.cache_updates import service
from app.features.cache_updates.cache import Cache, open_cache
from app.features.cache_updates.schemas import ItemIn, ItemRead, ItemStats, ItemWritten
from app.features.cache_updates.tasks import refresh_item, refresh_stats
from app.tasks import TaskQueueDep


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """One cache client for every request (its settings refuse one workers cannot update).

    FastAPI runs a router's lifespan inside the app's (after settings, logging and the
    database are ready), so the feature brings its own start-up without touching main.py.
    """
    async with open_cache() as cache:
        # /health reports the cache too: reads still work without it, but slower for all.
        yield {"items_cache": cache, health_check("cache"): cache.ping}


router = APIRouter(prefix="/items", tags=["items"], lifespan=lifespan, dependencies=[ClientScope])


def get_cache(request: Request) -> Cache:
    cache: Cache = request.state.items_cache
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
# Ids are 32-bit on PostgreSQL: a larger one is a client mistake (422), not a database error.
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown item"}}
CACHE_HEADER = "X-Cache"


def not_found(item_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Item {item_id} not found")


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[RateLimit])
async def create_item(body: ItemIn, response: Response, queue: TaskQueueDep) -> ItemWritten:
    # The item and the job refreshing the stats commit together: no crash leaves one
    # without the other. Should the process die before handing it over, it is recovered.
    item, job = await run_in_threadpool(service.create_item, body, refresh_stats)
    await queue.dispatch(job)
    response.headers["Location"] = f"/items/{item.id}"
    return ItemWritten(**item.model_dump(), job_id=job.id)


# Declared before /{item_id}, which would otherwise claim the path "stats".
@router.get("/stats")
async def read_stats(response: Response, cache: CacheDep) -> ItemStats:
    stats, hit = await service.read_stats(cache)
    response.headers[CACHE_HEADER] = "hit" if hit else "miss"
    return stats


@router.get("/{item_id}", responses=NOT_FOUND)
async def read_item(item_id: ItemId, response: Response, cache: CacheDep) -> ItemRead:
    item, hit = await service.read_item(cache, item_id)
    if item is None:
        raise not_found(item_id)
    response.headers[CACHE_HEADER] = "hit" if hit else "miss"
    return item


@router.put("/{item_id}", responses=NOT_FOUND, dependencies=[RateLimit])
async def update_item(
    item_id: ItemId, body: ItemIn, queue: TaskQueueDep, cache: CacheDep
) -> ItemWritten:
    """Write to the database and answer; the cached item and stats are refreshed after."""
    item = await run_in_threadpool(service.update_item, item_id, body)
    if item is None:
        raise not_found(item_id)
    try:
        job_id = await queue.enqueue(refresh_item, item_id=item_id)
    except Exception:
        # The write stands but no job will refresh the cache (a 503): drop the entries
        # rather than serve the old values until their TTL.
        await service.forget_item(cache, item_id)
        raise
    return ItemWritten(**item.model_dump(), job_id=job_id)
