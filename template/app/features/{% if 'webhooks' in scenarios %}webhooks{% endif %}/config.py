"""Webhook delivery settings, read from `WEBHOOKS_*` variables."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.config import settings_getter


class WebhookSettings(BaseSettings):
    """How deliveries reach receivers. The defaults suit receivers on the public internet."""

    model_config = SettingsConfigDict(env_prefix="WEBHOOKS_", env_file=".env", extra="ignore")

    # Receivers inside your own network (private, loopback, link-local addresses) are refused
    # unless this is true: a caller could otherwise make the service POST to your databases'
    # admin ports or a cloud metadata endpoint. Tests and a lab network set it.
    allow_private_urls: bool = False
    # A receiver is someone else's server: each delivery attempt waits this long at most.
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Only this much of an answer is read (its start is recorded on the delivery).
    max_response_bytes: int = Field(default=4096, ge=0, le=65_536)
    # A `Retry-After` longer than this is cut to it, so a receiver cannot park a job for days.
    retry_after_max_seconds: float = Field(default=300.0, ge=0, le=86_400)
    # An endpoint whose deliveries failed this many times in a row is disabled (PATCH it
    # with {"enabled": true} to deliver again).
    disable_after_failures: int = Field(default=5, ge=1, le=1000)
    # How many endpoints one service keeps: each event is one delivery job per endpoint.
    max_endpoints: int = Field(default=100, ge=1, le=10_000)


@settings_getter
@lru_cache
def get_webhook_settings() -> WebhookSettings:
    return WebhookSettings()
