"""Settings read from the environment."""

import pytest

from app.core.config import Settings


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
