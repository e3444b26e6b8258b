"""Settings of the request-logging scenario (environment variables prefixed `REQUEST_LOG_`)."""

from datetime import timedelta
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.config import duration_seconds, settings_getter


class RequestLogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REQUEST_LOG_", env_file=".env", extra="ignore")

    # Records waiting for the database; beyond this the oldest are dropped (and counted).
    buffer_size: int = Field(default=10_000, ge=1)
    # Records per database transaction; a full batch wakes the flusher before the interval.
    batch_size: int = Field(default=500, ge=1)
    # Longest time a record waits in memory before it is written.
    flush_interval_seconds: float = Field(default=1.0, gt=0)
    # Largest conversation `metadata`, as compact UTF-8 JSON: it travels in the job's
    # arguments (a broker message with Celery) and is stored with the message.
    max_metadata_bytes: int = Field(default=16_384, ge=2)
    # /logs/stats takes each route's percentiles from at most this many of its most recent
    # requests, so a call costs the same on a large table (counts and errors stay exact).
    stats_sample_size: int = Field(default=10_000, ge=1)
    # Request records older than this are deleted by the retention job (seconds or ISO
    # 8601, e.g. P30D); it runs every RETENTION_EVERY.
    retention: timedelta = timedelta(days=30)

    @field_validator("retention", mode="before")
    @classmethod
    def _seconds_or_iso(cls, value: object) -> object:
        return duration_seconds(value)

    @field_validator("retention")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration: seconds (86400) or ISO 8601 (P30D)")
        return value


@settings_getter
@lru_cache
def get_request_log_settings() -> RequestLogSettings:
    return RequestLogSettings()
