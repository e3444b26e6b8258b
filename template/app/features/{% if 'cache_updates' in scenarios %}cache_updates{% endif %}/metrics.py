"""Prometheus metrics of the cache: hits, misses, background refreshes, stats computations."""

from prometheus_client import Counter

CACHE_HITS = Counter("cache_hits", "Reads served from the cache", ["entry"])
CACHE_MISSES = Counter(
    "cache_misses", "Reads the cache could not serve (absent, expired or unreachable)", ["entry"]
)
CACHE_REFRESHES = Counter(
    "cache_refreshes",
    "Background refreshes after writes; skipped: the cache already held that version or newer",
    ["entry", "outcome"],
)
STATS_COMPUTATIONS = Counter(
    "items_stats_computations", "Times the (expensive) item stats aggregate was computed"
)
