"""The process's Prometheus metrics (served at /metrics by the operations issue)."""

from __future__ import annotations

from prometheus_client import Counter

REDIS_FALLBACKS = Counter(
    "syntera_redis_fallbacks",
    "Operations that went on without Redis (it failed or timed out), by what they were.",
    ["operation"],
)
CACHE_REQUESTS = Counter(
    "syntera_cache_requests", "Cache lookups, by cache and result.", ["cache", "result"]
)
