"""What every benchmark shares: a throw-away stack and database, timing and reporting."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syntera.db.migrations import migrate
from syntera.embedded import EmbeddedStack, StackUrls

RESULTS_DIR = Path(__file__).parent / "results"

# Rate limits far above what one machine can send: the throughput benchmarks measure the
# request path (the limiter's own cost is measured by bench.cache).
ROOMY_LIMITS = {
    "SYNTERA_RATE_LIMIT_WIDGET_KEY_PER_MINUTE": "10000000",
    "SYNTERA_RATE_LIMIT_WIDGET_SESSION_PER_MINUTE": "10000000",
    "SYNTERA_RATE_LIMIT_API_PER_MINUTE": "10000000",
}


@dataclass(frozen=True)
class BenchDatabase:
    """A migrated database on a benchmark stack."""

    owner_url: str
    api_url: str
    stack: StackUrls

    def api_stack(self) -> StackUrls:
        """The stack's URLs with the API pointed at this database."""
        return dataclasses.replace(
            self.stack, database_url=self.owner_url, api_database_url=self.api_url
        )


@contextmanager
def bench_database(
    data_dir: Path | None = None, services: tuple[str, ...] = ("postgres",)
) -> Iterator[BenchDatabase]:
    """A fresh, migrated database on an embedded stack of its own (stopped afterwards
    unless ``data_dir`` was given, so a rerun can reuse generated data); ``services``
    names the embedded servers to start besides PostgreSQL."""
    keep = data_dir is not None
    path = data_dir or Path(tempfile.mkdtemp(prefix="syntera-bench-", dir="/tmp"))
    stack = EmbeddedStack(path)
    urls = stack.start(tuple(dict.fromkeys(("postgres", *services))))
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(urls.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = BenchDatabase(
        owner_url=make_conninfo(**{**conninfo_to_dict(urls.database_url), "dbname": name}),
        api_url=make_conninfo(**{**conninfo_to_dict(urls.api_database_url), "dbname": name}),
        stack=urls,
    )
    migrate(database.owner_url)
    try:
        yield database
    finally:
        with psycopg.connect(urls.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if not keep:
            stack.stop()


@dataclass(frozen=True)
class Timing:
    """Latencies of repeated runs, in milliseconds."""

    runs: int
    median_ms: float
    p95_ms: float
    p99_ms: float


def time_runs(run: Callable[[], object], runs: int, warmup: int = 20) -> Timing:
    """Run ``run`` ``warmup`` times untimed, then ``runs`` times timed."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return summarize(samples)


def summarize(samples_ms: list[float]) -> Timing:
    """Median, p95 and p99 of latencies in milliseconds."""
    quantiles = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return Timing(len(samples_ms), statistics.median(samples_ms), quantiles[94], quantiles[98])


def machine() -> str:
    """One line describing where the figures were measured."""
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def report(name: str, conditions: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a Markdown table and write it as JSON under bench/results/."""
    print(f"\n### {name}\n\n{conditions}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    RESULTS_DIR.mkdir(exist_ok=True)
    payload = {"name": name, "conditions": conditions, "header": header, "rows": rows}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2))


def timing_row(name: str, timing: Timing, ratio: float) -> list[str]:
    """One table row: name, runs, median, p95, p99 and the ratio to the anchor."""
    return [
        name,
        str(timing.runs),
        f"{timing.median_ms:.3f}",
        f"{timing.p95_ms:.3f}",
        f"{timing.p99_ms:.3f}",
        f"{ratio:.2f}x",
    ]
