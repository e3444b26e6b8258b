"""Rate limits on endpoints that create background work: `RATE_LIMIT` per API key.

An endpoint opts in with `dependencies=[RateLimit]`, after its scope (router-level scopes
always come first). Callers are counted by API key, or by client address while the service
runs without keys; every opted-in endpoint draws from the caller's one budget. Over it: 429
with `Retry-After`. Counts live in the Redis the service already has (a Redis Celery
broker, or a feature's Redis cache), so every API process shares them, or else in this
process's memory; `RATE_LIMIT_STORAGE_URL` picks another place.
"""

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from prometheus_client import Counter

from app.core.config import get_rate_limit_settings, registered_getters
from app.core.security import Caller

logger = logging.getLogger(__name__)

STATE_KEY = "rate_limiter"
RATE_LIMIT_DECISIONS = Counter(
    "rate_limit_decisions",
    "Requests to rate-limited endpoints: allowed, limited (429), or allowed because the "
    "count could not be reached (storage unavailable)",
    ["decision"],
)
# Seconds a Redis round trip may take before the request goes on without a count.
REDIS_TIMEOUT_SECONDS = 1.0


def shared_redis_url() -> str | None:
    """The Redis the service already uses: the first settings object offering one.

    A settings class offers its Redis with a `shared_redis_url` property (Celery's broker,
    a feature's cache), so core code needs no import of either.
    """
    for getter in registered_getters():
        url = getattr(getter(), "shared_redis_url", None)
        if isinstance(url, str):
            return url
    return None


def storage_url() -> str:
    return get_rate_limit_settings().rate_limit_storage_url or shared_redis_url() or "memory://"


def without_password(url: str) -> str:
    """`url` fit for a log line: a Redis URL may carry a password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def open_storage(url: str, key_prefix: str) -> Storage:
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return MemoryStorage()
    uri = "async+redis+unix://" + url.partition("://")[2] if scheme == "unix" else f"async+{url}"
    return RedisStorage(
        uri,
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=key_prefix,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )


class RateLimiter:
    """An exact count of each caller's requests in the last window (a moving window).

    Not limits' sliding-window counter: it weighs the previous window's count and floors
    it, so just after a window boundary a caller gets one request more than the limit.
    The moving window keeps one timestamp per allowed request (at most the limit per
    caller) and is exact.
    """

    def __init__(self, storage: Storage, items: list[RateLimitItem]) -> None:
        self.storage = storage
        self.items = items
        self.strategy = MovingWindowRateLimiter(storage)

    async def retry_after(self, identity: str) -> int | None:
        """Count one request of `identity`: None if allowed, else the seconds to wait."""
        for item in self.items:
            if not await self.strategy.hit(item, "work", identity):
                stats = await self.strategy.get_window_stats(item, "work", identity)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None

    async def close(self) -> None:
        # limits offers no way to close its Redis client: close it here, or each process
        # (and each test's app) would leave a connection behind.
        client: Any = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()


@asynccontextmanager
async def rate_limiter_lifespan() -> AsyncIterator[dict[str, RateLimiter]]:
    """The app's rate limiter, for endpoints to read as `request.state.rate_limiter`."""
    settings = get_rate_limit_settings()
    url = storage_url()
    storage = open_storage(url, settings.rate_limit_key_prefix)
    limiter = RateLimiter(storage, parse_many(settings.rate_limit))
    logger.info(
        "rate limit on endpoints that create work: %s per caller, counted in %s",
        settings.rate_limit,
        without_password(url),
    )
    try:
        yield {STATE_KEY: limiter}
    finally:
        await limiter.close()


def _describe(limiter: RateLimiter) -> str:
    return " and ".join(str(item) for item in limiter.items)  # "60 per 1 minute"


async def enforce_rate_limit(request: Request) -> None:
    """429 with `Retry-After` once the caller has used up RATE_LIMIT."""
    limiter: RateLimiter = getattr(request.state, STATE_KEY)
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None:
        identity = caller.identity
    else:  # a public endpoint: count the client address
        identity = f"address:{request.client.host if request.client else 'unknown'}"
    try:
        wait = await limiter.retry_after(identity)
    except (StorageError, OSError, TimeoutError) as exc:
        # Failing open: an outage of the counter's Redis must not stop the service (and
        # with Celery on that Redis, enqueueing answers 503 anyway).
        RATE_LIMIT_DECISIONS.labels("unavailable").inc()
        logger.warning("rate limit storage unavailable, request allowed: %r", exc)
        return
    if wait is None:
        RATE_LIMIT_DECISIONS.labels("allowed").inc()
        return
    RATE_LIMIT_DECISIONS.labels("limited").inc()
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many requests: the limit is {_describe(limiter)}; try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


RateLimit = Depends(enforce_rate_limit)
