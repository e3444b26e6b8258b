"""Service settings, read from environment variables (and an optional `.env` file)."""

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Literal, Self, TypeVar, get_type_hints

from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

# A settings getter, typed as what it is (an `lru_cache` wrapper keeps its `cache_clear`).
G = TypeVar("G", bound=Callable[[], BaseSettings])
# Every cached settings getter of the service; `check_settings` loads them all at start-up.
_GETTERS: list[Callable[[], BaseSettings]] = []


def settings_getter(getter: G) -> G:
    """Register a cached settings getter, so start-up checks its variables."""
    _GETTERS.append(getter)
    return getter


def duration_seconds(value: object) -> object:
    """A duration variable given as a number of seconds ("3600"), as pydantic reads numbers.

    From the environment every value is a string, and pydantic parses a string as ISO 8601
    (P30D, PT1H) only.
    """
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return float(value)
    return value


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
    # Start-up upgrades the database schema (under a lock; see app/core/migrate.py). Turn it
    # off when a deploy step runs `python -m app.core.migrate` before the service starts.
    migrate_on_start: bool = True
    # Retention (durations in seconds or ISO 8601, e.g. P30D, PT1H): finished jobs older
    # than this are deleted; failed ones after JOB_FAILED_RETENTION if set.
    job_retention: timedelta = timedelta(days=30)
    job_failed_retention: timedelta | None = None
    # How often the retention job runs, and the rows it deletes per transaction.
    retention_every: timedelta = timedelta(hours=1)
    retention_batch: int = Field(default=1000, ge=1)

    @field_validator("job_retention", "job_failed_retention", "retention_every", mode="before")
    @classmethod
    def _seconds_or_iso(cls, value: object) -> object:
        return duration_seconds(value)

    @field_validator("job_retention", "job_failed_retention", "retention_every")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be a positive duration: seconds (3600) or ISO 8601 (PT1H, P30D)")
        return value

    # Error reporting: unhandled request errors and jobs that fail for good go to Sentry
    # (or a Sentry-compatible service) when a DSN is set; nothing is sent otherwise.
    sentry_dsn: SecretStr | None = None
    sentry_environment: str | None = None  # default: ENVIRONMENT
    sentry_release: str | None = None

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


# Characters of an RFC 6750 bearer token (token68), so a key travels in a header unchanged.
_KEY = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_KEY_LENGTH = 16
KEY_ADVICE = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def split_keys(keys: SecretStr | None) -> tuple[str, ...]:
    """The comma-separated keys of an `*_API_KEYS` variable."""
    if keys is None:
        return ()
    return tuple(key.strip() for key in keys.get_secret_value().split(",") if key.strip())


class SecuritySettings(BaseSettings):
    """Who may call the service, and how much a request may carry (see app/core/security.py)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # production refuses to start without API keys and hides /docs; development runs open
    # (with a warning) while no key is set.
    environment: Literal["development", "production"] = "development"
    # Comma-separated. Client keys call the feature endpoints; ops keys call those too, and
    # the operator endpoints (job administration, a feature's log analysis, /metrics if it
    # requires a key).
    api_keys: SecretStr | None = None
    ops_api_keys: SecretStr | None = None
    # Prometheus scrapes /metrics without a key unless this is true (then an ops key).
    metrics_require_key: bool = False
    # /docs, /redoc and /openapi.json are served in development; in production only if true.
    docs_in_production: bool = False
    # Largest request body; an upload with a limit of its own (a feature's setting) is
    # bounded by that instead.
    max_request_bytes: int = Field(default=1_048_576, ge=1)

    @field_validator("api_keys", "ops_api_keys")
    @classmethod
    def _well_formed_keys(cls, keys: SecretStr | None) -> SecretStr | None:
        for key in split_keys(keys):
            if len(key) < MIN_KEY_LENGTH or not _KEY.fullmatch(key):
                # Never the key itself in the message: it ends up in deployment logs.
                raise ValueError(
                    f"each key must be at least {MIN_KEY_LENGTH} characters of "
                    f"A-Z a-z 0-9 - . _ ~ + / (separate keys with commas); {KEY_ADVICE}"
                )
        return keys

    @model_validator(mode="after")
    def _keys_where_they_are_required(self) -> Self:
        client, ops = split_keys(self.api_keys), split_keys(self.ops_api_keys)
        if set(client) & set(ops):
            raise ValueError(
                "a key is listed in both API_KEYS and OPS_API_KEYS: give operators keys of "
                "their own (an ops key already works on every client endpoint)"
            )
        missing = [name for name, keys in (("API_KEYS", client), ("OPS_API_KEYS", ops)) if not keys]
        if self.environment == "production" and missing:
            raise ValueError(
                f"ENVIRONMENT=production requires API keys: set {' and '.join(missing)} "
                f"(comma-separated; {KEY_ADVICE})"
            )
        return self

    @property
    def serves_docs(self) -> bool:
        return self.environment == "development" or self.docs_in_production


@settings_getter
@lru_cache
def get_security_settings() -> SecuritySettings:
    return SecuritySettings()


class RateLimitSettings(BaseSettings):
    """How much background work one caller may create (see app/core/rate_limit.py)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Per API key (per client address while the service runs without keys), over every
    # endpoint that creates background work. Several limits: "60/minute;1000/hour".
    rate_limit: str = "60/minute"
    # Where the counts live. Empty: the Redis the service already uses (a Redis Celery
    # broker, or a feature's Redis cache), so every process shares them; else this process's memory.
    rate_limit_storage_url: str = ""
    # Redis keys start with this, so several services can share one Redis.
    rate_limit_key_prefix: str = "rate_limit"

    @field_validator("rate_limit")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                "not a rate limit: write it like 60/minute, or 10/second;1000/hour"
            ) from None
        return value

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _known_storage(cls, url: str) -> str:
        scheme = url.partition("://")[0]
        if url and scheme not in {"memory", "redis", "rediss", "unix"}:
            raise ValueError("use memory:// or a Redis URL such as redis://localhost:6379/0")
        if scheme in {"redis", "rediss", "unix"} and importlib.util.find_spec("redis") is None:
            raise ValueError("a Redis URL needs the redis package: uv add redis")
        return url


@settings_getter
@lru_cache
def get_rate_limit_settings() -> RateLimitSettings:
    return RateLimitSettings()
