"""Settings of the request-logging scenario (environment variables prefixed `REQUEST_LOG_`)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.config import settings_getter


class RequestLogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REQUEST_LOG_", env_file=".env", extra="ignore")

    # Records waiting for the database; beyond this the oldest are dropped (and counted).
    buffer_size: int = Field(default=10_000, ge=1)
    # Records per database transaction; a full batch wakes the flusher before the interval.
    batch_size: int = Field(default=500, ge=1)
    # Longest time a record waits in memory before it is written.
    flush_interval_seconds: float = Field(default=1.0, gt=0)


@settings_getter
@lru_cache
def get_request_log_settings() -> RequestLogSettings:
    return RequestLogSettings()
