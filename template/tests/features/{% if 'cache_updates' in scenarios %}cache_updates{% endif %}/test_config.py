"""Cache settings read from `CACHE_*` variables, and the refusal of memory:// with Celery."""

import pytest
from pydantic import ValidationError

import app.tasks
from app.features.cache_updates.config import CacheSettings, get_cache_settings
from tests.sample_work import create_sample_app


@pytest.fixture
def work_in_other_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with Celery: background work runs in worker processes, not in the API's."""
    monkeypatch.setattr(app.tasks, "RUNS_IN_API_PROCESS", False)


@pytest.fixture
def work_in_the_api_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with BackgroundTasks: background work runs in the API process."""
    monkeypatch.setattr(app.tasks, "RUNS_IN_API_PROCESS", True)


@pytest.mark.usefixtures("work_in_the_api_process")
@pytest.mark.parametrize(
    "url", ["memory://", "redis://localhost:6379/1", "rediss://cache:6380/0", "unix:///tmp/r.sock"]
)
def test_memory_and_redis_urls_are_accepted(url: str) -> None:
    assert CacheSettings(url=url).url == url


@pytest.mark.parametrize("url", ["memcached://localhost", "localhost:6379", ""])
def test_other_urls_are_refused_with_what_to_type_instead(url: str) -> None:
    with pytest.raises(ValueError, match="redis://localhost:6379/1"):
        CacheSettings(url=url)


@pytest.mark.usefixtures("work_in_the_api_process")
def test_only_memory_urls_keep_the_cache_in_process() -> None:
    assert CacheSettings(url="memory://").in_memory
    assert not CacheSettings(url="redis://localhost:6379/1").in_memory


@pytest.mark.usefixtures("work_in_other_processes")
def test_memory_cache_is_refused_when_workers_run_in_other_processes() -> None:
    with pytest.raises(ValidationError) as refused:
        CacheSettings(url="memory://")

    message = str(refused.value)
    assert "Celery worker processes, which cannot update that memory" in message
    assert "set CACHE_URL=redis://localhost:6379/1" in message


@pytest.mark.usefixtures("work_in_other_processes")
def test_the_default_with_workers_in_other_processes_is_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CACHE_URL")

    assert not CacheSettings().in_memory


@pytest.mark.usefixtures("work_in_other_processes")
def test_redis_is_accepted_with_workers_in_other_processes() -> None:
    assert not CacheSettings(url="redis://localhost:6379/1").in_memory


@pytest.mark.usefixtures("work_in_other_processes")
def test_the_service_refuses_to_start_with_a_cache_its_workers_cannot_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CACHE_URL", "memory://")
    get_cache_settings.cache_clear()

    with pytest.raises(SystemExit, match=r"^invalid configuration: CACHE_URL=memory:// keeps"):
        create_sample_app()
