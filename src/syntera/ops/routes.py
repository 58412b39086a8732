"""/v1/admin: the operator's views, for platform operators (``syntera admin grant``) and
the service key. Figures about the platform and about companies, never their rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from syntera.api.deps import Operator
from syntera.api.state import settings_of, stores_of, urls_of
from syntera.config import Settings
from syntera.metrics import MONGO_POOL
from syntera.ops import operator
from syntera.ops.stats import mongo_stats, postgres_stats

admin = APIRouter(prefix="/v1/admin", tags=["operations"])


@admin.get("/db")
async def database_statistics(request: Request, caller: Operator) -> dict[str, Any]:
    """What `syntera db stats --json` shows, with the statements that ran for the slow
    threshold or longer and their plans, and this process's pools: connections in use
    against their sizes, waits, errors and timeouts."""
    urls, settings = urls_of(request), settings_of(request)
    pool = stores_of(request).postgres
    postgres, mongodb, slow = await asyncio.gather(
        asyncio.to_thread(postgres_stats, urls.database_url),
        asyncio.to_thread(mongo_stats, urls.mongodb_uri, settings.mongodb_db),
        asyncio.to_thread(operator.slow_statements, urls.database_url, settings.slow_statement_ms),
    )
    stats = pool.get_stats()
    postgres["pool"] = {
        "in_use": stats.get("pool_size", 0) - stats.get("pool_available", 0),
        "idle": stats.get("pool_available", 0),
        "waiting": stats.get("requests_waiting", 0),
        "min": pool.min_size,
        "max": pool.max_size,
        "requests": stats.get("requests_num", 0),
        "wait_ms": stats.get("requests_wait_ms", 0),
        "timeouts": stats.get("requests_errors", 0),
        "connection_errors": stats.get("connections_errors", 0),
        "connections_lost": stats.get("connections_lost", 0),
    }
    postgres["slow_statements"] = slow
    postgres["slow_threshold_ms"] = settings.slow_statement_ms
    mongodb["pool"] = {
        "open": MONGO_POOL.open,
        "in_use": MONGO_POOL.in_use,
        "max": settings.mongodb_max_pool_size,
        "check_out_failures": MONGO_POOL.check_out_failures,
    }
    return {"postgres": postgres, "mongodb": mongodb}


@admin.get("/queues")
async def work_queues(request: Request, caller: Operator) -> dict[str, Any]:
    """Documents, workflow executions, purges and mail per state, with the oldest
    waiting job of each queue."""
    rows = await asyncio.to_thread(operator.queues, urls_of(request).database_url)
    return {"data": rows}


@admin.get("/purges")
async def recent_purges(
    request: Request,
    caller: Operator,
    limit: Annotated[int, Query(ge=1, le=100, description="How many, newest first.")] = 20,
) -> dict[str, Any]:
    """The latest purges of companies and contacts: state, stores done, last error."""
    rows = await asyncio.to_thread(operator.recent_purges, urls_of(request).database_url, limit)
    return {"data": rows}


@admin.get("/backups")
async def backups_on_disk(request: Request, caller: Operator) -> dict[str, Any]:
    """The `syntera backup` archives in the backup folder, newest first."""
    folder = backup_folder(settings_of(request))
    found = await asyncio.to_thread(operator.backups, folder)
    return {"folder": str(folder), "data": found}


@admin.get("/sizes")
async def store_sizes(
    request: Request,
    caller: Operator,
    days: Annotated[int, Query(ge=1, le=366, description="The period drawn.")] = 30,
) -> dict[str, Any]:
    """Each store's size at every sample of the period, and each table's growth."""
    since = datetime.now(UTC) - timedelta(days=days)
    history = await asyncio.to_thread(operator.size_history, urls_of(request).database_url, since)
    return {"since": since, "sample_every_s": settings_of(request).size_sample_s, **history}


def backup_folder(settings: Settings) -> Path:
    """Where scheduled backups are looked for."""
    return settings.backup_dir or settings.data_dir / "backups"


routers = [admin]
