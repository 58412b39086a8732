"""Slow statements: logged as one JSON line each, with the route and tenant that ran them.

The statement is logged in the form the code wrote it — placeholders, never the values —
so a log line can hold no customer data. Route and tenant come from context variables the
request's transaction sets.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

import orjson
from psycopg import AsyncCursor
from psycopg.rows import DictRow

from syntera.metrics import SLOW_STATEMENTS

log = logging.getLogger("syntera.slow_statements")

ROUTE: ContextVar[str | None] = ContextVar("syntera_route", default=None)
TENANT: ContextVar[str | None] = ContextVar("syntera_tenant", default=None)


class TimedCursor(AsyncCursor[DictRow]):
    """A cursor that reports statements slower than ``threshold_ms``."""

    threshold_ms: float = 100.0

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> TimedCursor:
        started = time.perf_counter()
        try:
            await super().execute(query, params, **kwargs)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            if elapsed_ms >= self.threshold_ms:
                _report(query, elapsed_ms)
        return self


def _report(query: Any, elapsed_ms: float) -> None:
    SLOW_STATEMENTS.inc()
    if isinstance(query, bytes):
        shape = query.decode(errors="replace")
    elif isinstance(query, str):
        shape = query
    else:  # psycopg.sql.Composed: its text, with placeholders
        shape = repr(query)
    line = {
        "event": "slow_statement",
        "duration_ms": round(elapsed_ms, 1),
        "route": ROUTE.get(),
        "tenant": TENANT.get(),
        "statement": " ".join(shape.split())[:2000],
    }
    log.warning(orjson.dumps(line).decode())
