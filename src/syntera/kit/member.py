"""A signed-in member's one-round-trip reads and writes of their company's rows.

BEGIN, the caller's settings, the membership read, the statement and COMMIT travel in
one pipeline (``syntera.db.postgres.read_as``/``write_as``); the statement finds the
company in the database (``(SELECT private.current_company_id())``), so nothing waits
between them. Used by the resources' routes and by the HTTP layer's fast paths alike, so
both answer the same 403 and 404.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from syntera.db.postgres import TenantConnection, read_as, write_as
from syntera.db.slow import TENANT
from syntera.db.tables import Filter, Listing, Row
from syntera.errors import Forbidden, NotFound
from syntera.kit.pagination import Page, PageRequest, page_from
from syntera.kit.resources import M, Resource, found
from syntera.tenancy import Principal

NO_COMPANY = "you are not a member of any company; create one with POST /v1/companies"
MANAGERS_ONLY = "only the company's owner or an admin may do this"

Pool = AsyncConnectionPool[TenantConnection]


async def read_as_member(
    pool: Pool,
    caller: Principal,
    query: bytes,
    params: dict[str, Any],
    *,
    managers_only: bool = False,
) -> list[DictRow]:
    """The rows of a read by a signed-in user, in one round trip; Forbidden when the
    caller is no member (or no manager, with ``managers_only``)."""
    membership, rows = await read_as(pool, caller, query, params)
    TENANT.set(str(membership.company_id) if membership else None)
    if membership is None:
        raise Forbidden(NO_COMPANY)
    if managers_only and not membership.manages_team:
        raise Forbidden(MANAGERS_ONLY)
    return rows


async def write_as_member(
    pool: Pool,
    caller: Principal,
    query: bytes,
    params: dict[str, Any],
    missing: NotFound | None = None,
) -> DictRow:
    """The row a signed-in member's one-statement write returns, in one round trip;
    Forbidden when the caller is no member (the statement, finding no company, wrote
    nothing), ``missing`` when it touched no row."""
    membership, rows = await write_as(pool, caller, query, params)
    TENANT.set(str(membership.company_id) if membership else None)
    if membership is None:
        raise Forbidden(NO_COMPANY)
    if not rows:
        raise missing or Forbidden(NO_COMPANY)
    return rows[0]


async def member_row(
    pool: Pool, caller: Principal, resource: Resource[Any], row_id: UUID, managers_only: bool
) -> Row:
    """A signed-in member's read of one row of their company, in one round trip
    (Forbidden if they are no member, or no manager with ``managers_only``; NotFound if
    there is none)."""
    query, params = resource.table.fetch_current_query, {"id": row_id}
    rows = await read_as_member(pool, caller, query, params, managers_only=managers_only)
    return found(resource, rows[0] if rows else None)


async def member_page(
    pool: Pool,
    caller: Principal,
    resource: Resource[M],
    paging: PageRequest,
    filters: list[Filter],
    managers_only: bool,
) -> Page[M]:
    """``member_row`` for a page of a list (no exact count: that is a second statement)."""
    table = resource.table
    if filters or paging.after is not None:
        statement, params, _ = table.list_statement(
            None, filters=filters, limit=paging.limit, after=paging.after, offset=paging.offset
        )
        query = statement.as_bytes()
    else:
        query, params = table.first_page_query, {"limit": paging.limit + 1, "offset": paging.offset}
    rows = await read_as_member(pool, caller, query, params, managers_only=managers_only)
    listing = Listing.of(rows, paging.limit)
    return page_from(listing, paging, resource.out, resource.table.time_column)
