"""Service settings, read from environment variables (and an optional `.env` file)."""

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Literal, TypeVar, get_type_hints

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

# A settings getter, typed as what it is (an `lru_cache` wrapper keeps its `cache_clear`).
G = TypeVar("G", bound=Callable[[], BaseSettings])
# Every cached settings getter of the service; `check_settings` loads them all at start-up.
_GETTERS: list[Callable[[], BaseSettings]] = []


def settings_getter(getter: G) -> G:
    """Register a cached settings getter, so start-up checks its variables."""
    _GETTERS.append(getter)
    return getter


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
    # BackgroundTasks: a process renews its jobs' leases every third of this; a job whose
    # lease ran out (its process died) is taken over by another process or the next start.
    job_lease_seconds: float = Field(default=30.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, url: str) -> str:
        # "postgresql://" alone would make SQLAlchemy look for psycopg2, which we don't ship.
        if url.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url


@settings_getter
@lru_cache
def get_settings() -> Settings:
    return Settings()


def check_settings() -> None:
    """Load every settings class now: a bad value stops start-up with one line saying which.

    Without this, a feature's settings load on first use, so a typo in its variables shows
    as a 500 on every request, or a failed job, long after the service said it started.
    """
    for getter in registered_getters():
        settings = get_type_hints(getter)["return"]
        try:
            getter()
        except ValidationError as exc:
            raise SystemExit(describe_settings_error(exc, settings)) from None
        except SettingsError as exc:  # a value that is not even JSON, for a list or dict
            field = re.search(r'field "(\w+)"', str(exc))
            name = variable_name(settings, field[1]) if field else settings.__name__
            reason = f"expected JSON ({exc.__cause__})" if exc.__cause__ else str(exc)
            raise SystemExit(f"invalid configuration: {name}: {reason}") from None


def registered_getters() -> list[Callable[[], BaseSettings]]:
    """Every settings getter of the service, features' included."""
    import app.features  # each feature's config module registers its getter when imported

    for feature in pkgutil.iter_modules(app.features.__path__):
        config = f"app.features.{feature.name}.config"
        if importlib.util.find_spec(config) is not None:
            importlib.import_module(config)
    return list(_GETTERS)


def variable_name(settings: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of `settings`."""
    info = settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, str):
        return alias
    return f"{settings.model_config.get('env_prefix') or ''}{field}".upper()


def describe_settings_error(exc: ValidationError, settings: type[BaseSettings]) -> str:
    """Name the environment variable of each refused value, and why (never a secret's value)."""
    problems = []
    for error in exc.errors():
        reason = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a rule across several variables says which itself
            problems.append(reason)
            continue
        name = variable_name(settings, str(error["loc"][0]))
        field = settings.model_fields.get(str(error["loc"][0]))
        kinds = (field.annotation, *getattr(field.annotation, "__args__", ())) if field else ()
        secret = SecretStr in kinds
        value = "" if secret or "input" not in error else f"={error['input']!r}"
        problems.append(f"{name}{value}: {reason}")
    return "invalid configuration: " + "; ".join(problems)
