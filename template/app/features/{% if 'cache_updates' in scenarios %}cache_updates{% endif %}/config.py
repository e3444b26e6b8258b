"""Settings of the cache_updates scenario, read from `CACHE_*` environment variables."""

from functools import lru_cache
from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app import tasks
from app.core.config import settings_getter

SCHEMES = ("memory", "redis", "rediss", "unix")
DEFAULT_REDIS = "redis://localhost:6379/1"


class CacheSettings(BaseSettings):
    """Where the cache lives and how long its entries stay."""

    model_config = SettingsConfigDict(env_prefix="CACHE_", env_file=".env", extra="ignore")

    # memory:// is right for ONE process running its own background work; anything else
    # (Celery workers, several API processes) must share a Redis: redis://host:6379/1.
    # The default follows the task backend, so a fresh project starts either way.
    url: str = Field(
        default_factory=lambda: "memory://" if tasks.RUNS_IN_API_PROCESS else DEFAULT_REDIS
    )
    ttl_seconds: float = Field(default=300.0, gt=0)
    # Each entry lives up to this fraction longer, at random, so entries written
    # together do not all expire (and miss) together.
    ttl_jitter: float = Field(default=0.1, ge=0, le=1)
    # Keys start with this, so several services (or test runs) can share one Redis.
    key_prefix: str = "cache_updates:"
    # How long one reader may compute the stats before another reader may take over.
    lock_seconds: float = Field(default=30.0, gt=0)
    # memory:// only: the oldest entries are dropped beyond this many.
    max_entries: int = Field(default=10_000, ge=1)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url.partition("://")[0] not in SCHEMES or "://" not in url:
            raise ValueError(
                f"unsupported cache URL {url!r}: use memory:// (one process) "
                "or a Redis URL such as redis://localhost:6379/1"
            )
        return url

    @model_validator(mode="after")
    def _shared_with_the_workers(self) -> Self:
        """Refuse memory:// when background work runs in other processes (Celery workers)."""
        if self.in_memory and not tasks.RUNS_IN_API_PROCESS:
            raise ValueError(
                "CACHE_URL=memory:// keeps the cache inside the API process, but background "
                "work runs in Celery worker processes, which cannot update that memory: "
                "refreshes after writes would be lost and reads would serve stale data. Give "
                f"the API and the workers one shared Redis instead: set CACHE_URL={DEFAULT_REDIS}"
            )
        return self

    @property
    def in_memory(self) -> bool:
        return self.url.startswith("memory://")

    @property
    def shared_redis_url(self) -> str | None:
        """The cache's Redis, which rate limits share (see app/core/rate_limit.py)."""
        return None if self.in_memory else self.url


@settings_getter
@lru_cache
def get_cache_settings() -> CacheSettings:
    return CacheSettings()
