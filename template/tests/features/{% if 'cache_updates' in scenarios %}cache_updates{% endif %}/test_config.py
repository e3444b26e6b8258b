"""Cache settings read from `CACHE_*` variables."""

import pytest

from app.features.cache_updates.config import CacheSettings


@pytest.mark.parametrize(
    "url", ["memory://", "redis://localhost:6379/1", "rediss://cache:6380/0", "unix:///tmp/r.sock"]
)
def test_memory_and_redis_urls_are_accepted(url: str) -> None:
    assert CacheSettings(url=url).url == url


@pytest.mark.parametrize("url", ["memcached://localhost", "localhost:6379", ""])
def test_other_urls_are_refused_with_what_to_type_instead(url: str) -> None:
    with pytest.raises(ValueError, match="redis://localhost:6379/1"):
        CacheSettings(url=url)


def test_only_memory_urls_keep_the_cache_in_process() -> None:
    assert CacheSettings(url="memory://").in_memory
    assert not CacheSettings(url="redis://localhost:6379/1").in_memory
