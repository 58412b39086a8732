"""/v1/admin: operator views, for the service key only."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from syntera.api.deps import System
from syntera.api.state import settings_of, stores_of, urls_of
from syntera.ops.stats import mongo_stats, postgres_stats

admin = APIRouter(prefix="/v1/admin", tags=["operations"])


@admin.get("/db")
async def database_statistics(request: Request, system: System) -> dict[str, Any]:
    """What `syntera db stats --json` shows, plus this process's pools (service key only)."""
    urls, settings = urls_of(request), settings_of(request)
    pool = stores_of(request).postgres
    postgres, mongodb = await asyncio.gather(
        asyncio.to_thread(postgres_stats, urls.database_url),
        asyncio.to_thread(mongo_stats, urls.mongodb_uri, settings.mongodb_db),
    )
    stats = pool.get_stats()
    postgres["pool"] = {
        "in_use": stats.get("pool_size", 0) - stats.get("pool_available", 0),
        "idle": stats.get("pool_available", 0),
        "waiting": stats.get("requests_waiting", 0),
        "max": pool.max_size,
    }
    return {"postgres": postgres, "mongodb": mongodb}


routers = [admin]
