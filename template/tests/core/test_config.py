"""Settings read from the environment, and the start-up check of every settings class."""

import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import get_type_hints

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core import config
from app.core.config import (
    Settings,
    check_settings,
    get_settings,
    registered_getters,
    variable_name,
)
from app.main import create_app


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_plain_postgres_urls_use_the_shipped_driver(scheme: str) -> None:
    settings = Settings(database_url=f"{scheme}://user@db:5432/app")

    assert settings.database_url == "postgresql+psycopg://user@db:5432/app"


def test_bad_values_are_refused_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", "0")

    with pytest.raises(ValueError, match="job_max_attempts"):
        Settings()


def test_a_bad_variable_stops_start_up_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    get_settings.cache_clear()

    with pytest.raises(SystemExit) as stopped:
        create_app()

    assert str(stopped.value) == (
        "invalid configuration: LOG_FORMAT='xml': Input should be 'json' or 'console'"
    )


class _ProbeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROBE_")

    retries: int = Field(default=1, ge=0)
    token: SecretStr | None = Field(default=None, min_length=8)


@lru_cache
def _get_probe_settings() -> _ProbeSettings:
    return _ProbeSettings()


def test_every_registered_settings_class_is_checked_and_secrets_stay_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "_GETTERS", [*config._GETTERS, _get_probe_settings])
    monkeypatch.setenv("PROBE_RETRIES", "-1")
    monkeypatch.setenv("PROBE_TOKEN", "hunter2")
    _get_probe_settings.cache_clear()

    with pytest.raises(SystemExit) as stopped:
        check_settings()

    message = str(stopped.value)
    assert message.startswith("invalid configuration: PROBE_RETRIES='-1': ")
    assert "PROBE_TOKEN: " in message
    assert "hunter2" not in message
    monkeypatch.delenv("PROBE_RETRIES")
    monkeypatch.delenv("PROBE_TOKEN")
    _get_probe_settings.cache_clear()
    check_settings()  # the probe's defaults are valid: nothing else stands in the way


def test_the_server_refuses_to_start_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "JOB_MAX_ATTEMPTS": "0", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    server = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert server.returncode != 0
    assert server.stderr.strip().splitlines() == [
        "invalid configuration: JOB_MAX_ATTEMPTS='0': Input should be greater than or equal to 1"
    ]


def test_every_setting_is_listed_in_env_example() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    # Named anywhere counts: a renamed setting's old name is mentioned in a comment.
    listed = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", example))

    for getter in registered_getters():
        settings = get_type_hints(getter)["return"]
        for field in settings.model_fields:
            assert variable_name(settings, field) in listed, f"{settings.__name__}.{field}"
