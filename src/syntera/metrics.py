"""The process's Prometheus metrics, served at /metrics.

With several uvicorn workers each process serves its own figures (a scrape reaches one
worker); run Prometheus' multiprocess mode or scrape workers separately to sum them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pymongo import monitoring

REDIS_FALLBACKS = Counter(
    "syntera_redis_fallbacks",
    "Operations that went on without Redis (it failed or timed out), by what they were.",
    ["operation"],
)
CACHE_REQUESTS = Counter(
    "syntera_cache_requests", "Cache lookups, by cache and result.", ["cache", "result"]
)
HTTP_REQUESTS = Counter(
    "syntera_http_requests", "HTTP requests answered, by route and status.",
    ["method", "route", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "syntera_http_request_duration_seconds", "Time to answer, by route.", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
KB_DOCUMENTS = Counter(
    "syntera_kb_documents", "Knowledge-base documents a worker finished, by outcome.", ["outcome"]
)
WORKFLOW_EXECUTIONS = Counter(
    "syntera_workflow_executions", "Workflow executions finished, by status.", ["status"]
)
EVENTS_PUBLISHED = Counter(
    "syntera_events_published", "Live events published after commit, by type.", ["type"]
)
EVENTS_DROPPED = Counter(
    "syntera_events_dropped",
    "Live events not delivered: not published (Redis) or a subscriber too far behind.",
    ["reason"],
)
EVENT_STREAMS = Gauge(
    "syntera_event_streams", "Event streams open in this process, by kind.", ["kind"]
)
KB_CHUNKS = Counter("syntera_kb_chunks", "Knowledge-base chunks embedded and stored.")
SLOW_STATEMENTS = Counter(
    "syntera_slow_statements", "PostgreSQL statements over the slow-query threshold."
)


# Pools are read when Prometheus scrapes; the pools of every live app in this process.
_PG_POOLS: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_postgres_pool(pool: Any) -> None:
    _PG_POOLS.add(pool)


class PoolCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        postgres = GaugeMetricFamily(
            "syntera_postgres_pool_connections", "PostgreSQL pool connections by state.",
            labels=["state"],
        )  # fmt: skip
        totals = {"in_use": 0, "idle": 0, "waiting": 0, "max": 0}
        for pool in list(_PG_POOLS):
            stats = pool.get_stats()
            size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
            totals["in_use"] += size - idle
            totals["idle"] += idle
            totals["waiting"] += stats.get("requests_waiting", 0)
            totals["max"] += pool.max_size
        for state, value in totals.items():
            postgres.add_metric([state], value)
        yield postgres
        mongo = GaugeMetricFamily(
            "syntera_mongodb_pool_connections", "MongoDB pool connections by state.",
            labels=["state"],
        )  # fmt: skip
        mongo.add_metric(["open"], MONGO_POOL.open)
        mongo.add_metric(["in_use"], MONGO_POOL.in_use)
        yield mongo


class MongoPoolListener(monitoring.ConnectionPoolListener):
    """Counts MongoDB connections as the driver reports them."""

    def __init__(self) -> None:
        self.open = 0
        self.in_use = 0
        self.check_out_failures = 0  # no connection within the wait, or the server away

    def connection_created(self, event: Any) -> None:
        self.open += 1

    def connection_closed(self, event: Any) -> None:
        self.open -= 1

    def connection_checked_out(self, event: Any) -> None:
        self.in_use += 1

    def connection_checked_in(self, event: Any) -> None:
        self.in_use -= 1

    def connection_check_out_failed(self, event: Any) -> None:
        self.check_out_failures += 1

    def _uncounted(self, event: Any) -> None:
        """The events that change no count (the driver calls every method)."""

    pool_created = pool_ready = pool_cleared = pool_closed = _uncounted
    connection_ready = connection_check_out_started = _uncounted


MONGO_POOL = MongoPoolListener()
REGISTRY.register(PoolCollector())
