"""The PostgreSQL pool of the API and the tenant transaction every request runs in.

The pool connects as ``authenticator``, a login role that holds no privilege of its own.
Each transaction first becomes the caller: ``role`` and ``request.jwt.claims`` are set
with ``set_config(..., true)`` (transaction-local, exactly what PostgREST and Supabase do),
and row-level security does the rest. The settings and the transaction's BEGIN travel in
one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.tenancy import Principal

TenantConnection = AsyncConnection[DictRow]

# Transaction-local (third argument true): nothing survives into the next request that
# borrows this connection from the pool.
# `request.jwt.claim.sub` is the legacy per-claim setting PostgREST also sets; auth.uid()
# reads it first, which spares every statement a JSON parse of the claims.
BECOME_PRINCIPAL = """
SELECT set_config('role', %(role)s, true),
       set_config('request.jwt.claims', %(claims)s, true),
       set_config('request.jwt.claim.sub', %(sub)s, true)
"""

# Run as the principal, after BECOME_PRINCIPAL: a copy of the caller's membership that
# the policy helpers use instead of looking it up in every statement (migration 004).
READ_MEMBERSHIP = "SELECT set_config('request.membership', private.membership(), true)"


async def _configure(conn: TenantConnection) -> None:
    """Run once per new pooled connection.

    Autocommit, because transactions are opened explicitly by ``begin_as``: an explicit
    BEGIN can share a pipeline with the settings, where psycopg's implicit BEGIN would
    be answered before anything else is sent.
    """
    await conn.set_autocommit(True)


def create_api_pool(
    settings: Settings, conninfo: str, *, open: bool = False
) -> AsyncConnectionPool[TenantConnection]:
    """The API's pool, connected as ``authenticator`` (not opened unless ``open``)."""
    options = f"-c statement_timeout={settings.pg_statement_timeout_ms}"
    return AsyncConnectionPool(
        conninfo,
        min_size=settings.pg_pool_min_size,
        max_size=settings.pg_pool_max_size,
        timeout=settings.pg_pool_timeout_s,
        kwargs={"row_factory": dict_row, "options": options, "application_name": "syntera-api"},
        configure=_configure,
        connection_class=AsyncConnection[DictRow],
        open=open,
        name="syntera-api",
    )


def principal_settings(principal: Principal) -> dict[str, str]:
    """The parameters of BECOME_PRINCIPAL for ``principal``."""
    return {
        "role": principal.role,
        "claims": orjson.dumps(principal.claims).decode(),
        "sub": str(principal.claims.get("sub", "")),
    }


async def become(conn: TenantConnection, principal: Principal) -> None:
    """Make the rest of the current transaction run as ``principal``."""
    await conn.execute(BECOME_PRINCIPAL, principal_settings(principal))
    if principal.role == "authenticated":  # anon has no rows; service_role bypasses RLS
        await conn.execute(READ_MEMBERSHIP)


async def begin_as(conn: TenantConnection, principal: Principal) -> None:
    """Open a transaction on ``conn`` as ``principal``: BEGIN and the settings are sent in
    one pipeline and answered in one round trip."""
    async with conn.pipeline():
        await conn.execute("BEGIN")
        await become(conn, principal)


@asynccontextmanager
async def transaction_as(
    pool: AsyncConnectionPool[TenantConnection], principal: Principal
) -> AsyncIterator[TenantConnection]:
    """One transaction as ``principal``: committed when the block ends, rolled back if it
    raises. Everything run on the yielded connection is subject to row-level security as
    that principal (``service_role`` bypasses it)."""
    async with pool.connection() as conn:
        await begin_as(conn, principal)
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
