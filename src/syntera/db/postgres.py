"""The PostgreSQL pool of the API and the tenant transaction every request runs in.

The pool connects as ``authenticator``, a login role that holds no privilege of its own.
Each transaction first becomes the caller: ``role`` and ``request.jwt.claims`` are set
with ``set_config(..., true)`` (transaction-local, exactly what PostgREST and Supabase do),
and row-level security does the rest. The settings and the transaction's BEGIN travel in
one pipelined round trip.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import orjson
from psycopg import AsyncConnection, AsyncCursor
from psycopg.conninfo import make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.slow import TimedCursor
from syntera.tenancy import Membership, Principal

TenantConnection = AsyncConnection[DictRow]
# A statement and its parameters, sent later (with a transaction's COMMIT).
Statement = tuple[bytes, dict[str, Any]]

# Transaction-local (third argument true): nothing survives into the next request that
# borrows this connection from the pool.
# `request.jwt.claim.sub` is the legacy per-claim setting PostgREST also sets; auth.uid()
# reads it first, which spares every statement a JSON parse of the claims.
# The statement timeout is set here too, not as a connection option: a transaction
# pooler (PgBouncer, Supavisor) hands server connections to other clients, so nothing
# may be set for the session.
BECOME_PRINCIPAL = """
SELECT set_config('role', %(role)s, true),
       set_config('request.jwt.claims', %(claims)s, true),
       set_config('request.jwt.claim.sub', %(sub)s, true),
       set_config('statement_timeout', %(statement_timeout)s, true)
"""


class TransactionDefaults:
    """What every transaction of this process sets besides who it runs as (from the
    settings, when the API's pool is made)."""

    statement_timeout_ms: int = 15_000


# Run as the principal, after BECOME_PRINCIPAL: the caller's membership, for the code
# above (which company a statement names, what a role may try). The policies do not
# use it: they read public.users themselves (migration 016), so nothing a transaction
# sets can change what they decide.
READ_MEMBERSHIP = "SELECT private.membership() AS membership"


async def _configure(conn: TenantConnection) -> None:
    """Run once per new pooled connection.

    Autocommit, because transactions are opened explicitly by ``begin_as``: an explicit
    BEGIN can share a pipeline with the settings, where psycopg's implicit BEGIN would
    be answered before anything else is sent. JSON columns are read by ``load_json``.
    """
    await conn.set_autocommit(True)
    set_json_loads(load_json, conn)


# Nineteen digits in a row: perhaps an integer beyond 64 bits, which orjson would read
# as a float (losing digits) where json keeps it exact.
_LONG_NUMBER = re.compile(rb"\d{19}")


def load_json(data: bytes | str) -> Any:
    """A json/jsonb value as ``json.loads`` reads it, in a fifteenth of the time for
    the common document: orjson, except where it would read differently (a number of
    19 digits or more, which it reads as a float; anything it refuses, such as 1e400).
    Profiling a page of 20 contacts put json.loads of their metadata at a fifth of the
    request's CPU (cProfile, bench: 216 us of about 1 ms)."""
    if isinstance(data, bytes) and _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


# psycopg's default: a statement is prepared once a connection has run it this often.
PREPARE_THRESHOLD = 5


SYSTEM_LOGIN = "syntera_system"


class ApiPool(AsyncConnectionPool[TenantConnection]):
    """The API's pool, connected as ``authenticator``, carrying the system's pool,
    connected as ``syntera_system``: a transaction as ``service_role`` borrows from the
    latter (``pool_for``), so ``authenticator`` need not be a member of ``service_role``
    and SQL run on its connections cannot become it (issue 35, cause 2). Opened and
    closed together."""

    system: AsyncConnectionPool[TenantConnection]

    # The signatures are psycopg_pool's, whose timeouts these methods pass on.
    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Open both pools."""
        await super().open(wait=wait, timeout=timeout)
        await self.system.open(wait=wait, timeout=timeout)

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Close both pools."""
        try:
            await self.system.close(timeout=timeout)
        finally:
            await super().close(timeout=timeout)


def pool_for(
    pool: AsyncConnectionPool[TenantConnection], principal: Principal
) -> AsyncConnectionPool[TenantConnection]:
    """Where a transaction as ``principal`` borrows its connection: the system's pool for
    ``service_role``, the API's for everyone else."""
    if principal.role == "service_role" and isinstance(pool, ApiPool):
        return pool.system
    return pool


def system_conninfo_of(conninfo: str) -> str:
    """The system's login at the API's server: ``conninfo`` with ``syntera_system`` as
    the user (what the embedded stack trusts; other deployments set
    SYNTERA_SYSTEM_DATABASE_URL)."""
    return make_conninfo(conninfo, user=SYSTEM_LOGIN)


def create_api_pool(
    settings: Settings,
    conninfo: str,
    *,
    system_conninfo: str | None = None,
) -> ApiPool:
    """The API's pool, connected as ``authenticator``, and the system's, connected as
    ``system_conninfo`` (by default ``conninfo`` as ``syntera_system``); not opened."""
    TransactionDefaults.statement_timeout_ms = settings.pg_statement_timeout_ms
    TimedCursor.threshold_ms = settings.slow_statement_ms
    # Server-side prepared statements live in a server session. Behind a transaction
    # pooler the next transaction may run on another client's server connection, where
    # psycopg's names (_pg3_0, …) already exist or do not (PgBouncer before 1.21 does not
    # track them): a statement would fail with "prepared statement … already exists".
    prepare_threshold = PREPARE_THRESHOLD if settings.prepared_statements else None

    def make(url: str, name: str, min_size: int) -> dict[str, Any]:
        return {
            "conninfo": url,
            "min_size": min_size,
            "max_size": settings.pg_pool_max_size,
            "timeout": settings.pg_pool_timeout_s,
            "kwargs": {
                "row_factory": dict_row,
                "cursor_factory": TimedCursor,
                "prepare_threshold": prepare_threshold,
                "application_name": name,
            },
            "configure": _configure,
            "connection_class": AsyncConnection[DictRow],
            "open": False,
            "name": name,
        }

    # The system's transactions are the fewer (workers, sign-in, service keys): one idle
    # connection at most is kept for them.
    system: AsyncConnectionPool[TenantConnection] = AsyncConnectionPool(
        **make(
            system_conninfo or system_conninfo_of(conninfo),
            "syntera-system",
            min(settings.pg_pool_min_size, 1),
        )
    )
    pool = ApiPool(**make(conninfo, "syntera-api", settings.pg_pool_min_size))
    pool.system = system
    return pool


def principal_settings(principal: Principal) -> dict[str, str]:
    """The parameters of BECOME_PRINCIPAL for ``principal``."""
    return {
        "role": principal.role,
        "claims": orjson.dumps(principal.claims).decode(),
        "sub": str(principal.claims.get("sub", "")),
        "statement_timeout": str(TransactionDefaults.statement_timeout_ms),
    }


async def _send_principal(
    conn: TenantConnection,
    principal: Principal,
    settings: Mapping[str, str] | None = None,
    *,
    membership: bool = True,
) -> AsyncCursor[DictRow] | None:
    """Send the statements that make the transaction run as ``principal`` (with more
    transaction-local ``settings`` in the same statement); the cursor that will hold an
    authenticated user's membership (if ``membership``), or None for other roles."""
    if settings:
        await conn.execute(_become_query(len(settings)),
                           {**principal_settings(principal), **_flat(settings)})  # fmt: skip
    else:
        await conn.execute(BECOME_PRINCIPAL, principal_settings(principal))
    if principal.role != "authenticated" or not membership:
        return None  # anon has no rows; service_role bypasses RLS
    return await conn.execute(READ_MEMBERSHIP)


@lru_cache(maxsize=8)
def _become_query(count: int) -> str:
    """BECOME_PRINCIPAL and ``count`` more settings, in one statement."""
    more = "".join(f",\n       set_config(%(n{i})s, %(v{i})s, true)" for i in range(count))
    return BECOME_PRINCIPAL.rstrip() + more + "\n"


async def _membership(cursor: AsyncCursor[DictRow] | None) -> Membership | None:
    row = await cursor.fetchone() if cursor is not None else None
    return Membership.parse(row["membership"]) if row else None


async def become(conn: TenantConnection, principal: Principal) -> Membership | None:
    """Make the rest of the current transaction run as ``principal``.

    Returns an authenticated user's membership (their company and role as the database
    has them now), or None for a user without a company and for the other roles.
    """
    return await _membership(await _send_principal(conn, principal))


async def begin_as(conn: TenantConnection, principal: Principal) -> Membership | None:
    """Open a transaction on ``conn`` as ``principal``: BEGIN, the settings and the
    membership read are sent in one pipeline and answered in one round trip. Returns
    the caller's membership, as ``become`` does."""
    async with conn.pipeline():
        await conn.execute("BEGIN")
        cursor = await _send_principal(conn, principal)
    return await _membership(cursor)  # the pipeline's results arrived when it closed


async def read_as(
    pool: AsyncConnectionPool[TenantConnection],
    principal: Principal,
    query: bytes | str,
    params: Mapping[str, Any],
) -> tuple[Membership | None, list[DictRow]]:
    """A read in one round trip: BEGIN, the settings, the membership read, ``query`` and
    COMMIT, in one pipeline. ``query`` finds the caller's company in the database
    (``private.current_company_id()``, from the membership just read), not in Python, so
    nothing waits between them. The caller's membership and the rows."""
    return await _one_statement(pool, principal, "BEGIN READ ONLY", query, params)


async def write_as(
    pool: AsyncConnectionPool[TenantConnection],
    principal: Principal,
    query: bytes | str,
    params: Mapping[str, Any],
) -> tuple[Membership | None, list[DictRow]]:
    """``read_as`` for one write. A statement that fails stops the pipeline before
    COMMIT, and the transaction is rolled back: nothing of it is kept."""
    return await _one_statement(pool, principal, "BEGIN", query, params)


async def _one_statement(
    pool: AsyncConnectionPool[TenantConnection],
    principal: Principal,
    begin: str,
    query: bytes | str,
    params: Mapping[str, Any],
) -> tuple[Membership | None, list[DictRow]]:
    membership, results = await run_as(
        pool, principal, [(query, params)], read_only=begin == "BEGIN READ ONLY"
    )
    return membership, results[0]


async def run_as(
    pool: AsyncConnectionPool[TenantConnection],
    principal: Principal,
    statements: Sequence[tuple[bytes | str, Mapping[str, Any]]],
    *,
    read_only: bool = False,
    commit: bool = True,
    settings: Mapping[str, str] | None = None,
    membership: bool = True,
) -> tuple[Membership | None, list[list[DictRow]]]:
    """Statements in one transaction as ``principal``, in one round trip: the
    principal's settings with ``settings`` (more transaction-local settings, such as
    PostgREST's ``request.method``) in one statement, the membership read (unless
    ``membership`` is false: the data API has no use for it), then each statement. A
    statement that fails stops the pipeline and the transaction is rolled back. The
    caller's membership and each statement's rows.

    Everything a pipeline sends before its Sync is one transaction (the extended query
    protocol's rule), committed at the Sync: so no BEGIN and COMMIT are sent, two of a
    read's four statements, each a pass through the driver (py-spy: about a twentieth of
    a /rest/v1 read's CPU). READ ONLY is the transaction's ``transaction_read_only``,
    set with the rest. When ``commit`` is false the statements run between BEGIN and
    ROLLBACK instead (nothing is kept, yet every statement ran)."""
    if read_only:
        settings = {**(settings or {}), "transaction_read_only": "on"}
    async with pool_for(pool, principal).connection() as conn:
        try:
            async with conn.pipeline():
                if not commit:
                    await conn.execute("BEGIN")
                member = await _send_principal(conn, principal, settings, membership=membership)
                cursors = [await conn.execute(query, params) for query, params in statements]
                if not commit:
                    await conn.execute("ROLLBACK")
        except BaseException:
            await conn.rollback()
            raise
        rows = [await cursor.fetchall() if cursor.description else [] for cursor in cursors]
        return await _membership(member), rows


def _flat(settings: Mapping[str, str]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for index, (name, value) in enumerate(settings.items()):
        flat[f"n{index}"], flat[f"v{index}"] = name, value
    return flat


@asynccontextmanager
async def open_transaction(
    pool: AsyncConnectionPool[TenantConnection],
    principal: Principal,
    at_commit: list[Statement] | None = None,
) -> AsyncIterator[tuple[TenantConnection, Membership | None]]:
    """One transaction as ``principal``, with the caller's membership: committed when
    the block ends, rolled back if it raises. Everything run on the connection is
    subject to row-level security as that principal (``service_role`` bypasses it).
    The statements in ``at_commit`` when the block ends are sent with the COMMIT, in
    one round trip; if one fails, nothing is committed."""
    async with pool_for(pool, principal).connection() as conn:
        membership = await begin_as(conn, principal)
        try:
            yield conn, membership
            if at_commit:
                async with conn.pipeline():
                    for query, params in at_commit:
                        await conn.execute(query, params)
                    await conn.execute("COMMIT")
                return
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


@asynccontextmanager
async def transaction_as(
    pool: AsyncConnectionPool[TenantConnection], principal: Principal
) -> AsyncIterator[TenantConnection]:
    """``open_transaction`` for callers that need only the connection."""
    async with open_transaction(pool, principal) as (conn, _):
        yield conn
