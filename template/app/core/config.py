"""Service settings, read from environment variables (and an optional `.env` file)."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the whole service; each feature keeps its own in its `config.py`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./data/app.db"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    job_max_attempts: int = Field(default=3, ge=1)
    job_retry_base_seconds: float = Field(default=1.0, ge=0)
    job_retry_max_seconds: float = Field(default=60.0, ge=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, url: str) -> str:
        # "postgresql://" alone would make SQLAlchemy look for psycopg2, which we don't ship.
        if url.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
