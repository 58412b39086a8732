"""What the application does to serve /rest/v1: the handlers of each method (for the
``RestPaths`` middleware) and the schema cache kept fresh for the application's
lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.ratelimit import Limiters
from syntera.rest.handler import PREFIX, Handler, Rest, RestPaths
from syntera.rest.reads import options, read
from syntera.rest.rpc import call
from syntera.rest.schema import SchemaHolder
from syntera.rest.writes import delete, insert, put, update
from syntera.tenancy import Principal

__all__ = ["PREFIX", "RestPaths", "handlers", "serving_rest"]


def handlers() -> Mapping[tuple[bool, str], Handler]:
    """The handler of each (is it an RPC, method) pair /rest/v1 answers."""
    return {
        (False, "GET"): read, (False, "HEAD"): read, (False, "OPTIONS"): options,
        (False, "POST"): insert, (False, "PATCH"): update, (False, "DELETE"): delete,
        (False, "PUT"): put,
        (True, "GET"): call, (True, "HEAD"): call, (True, "POST"): call,
    }  # fmt: skip


@asynccontextmanager
async def serving_rest(
    settings: Settings,
    pool: AsyncConnectionPool[TenantConnection],
    listen_conninfo: str,
    authenticate: Callable[[str], Principal],
    limiters: Limiters | None,
) -> AsyncIterator[Rest]:
    """The data API's state while the application serves: the schema cache, read in
    the background at start and again at each ``NOTIFY pgrst, 'reload schema'``."""
    holder = SchemaHolder(pool, settings.rest_schema_list)
    stop = asyncio.Event()
    listening = asyncio.create_task(holder.listen(listen_conninfo, stop))
    try:
        yield Rest(pool, holder, settings, authenticate, limiters)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(listening, 5)
