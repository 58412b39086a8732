"""Contacts and deals: the tables, the list filters and the pipeline totals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import sql

from syntera.crm import schemas
from syntera.db.postgres import TenantConnection
from syntera.db.tables import Filter, Row
from syntera.errors import not_found
from syntera.kit.resources import Resource, create_row, update_row
from syntera.unit_of_work import TenantTransaction

CONTACTS = Resource.of(
    "contacts",
    schemas.Contact,
    "contact",
    schemas.ContactCreate,
    schemas.ContactUpdate,
    json_columns=frozenset({"metadata"}),
)
DEALS = Resource.of(
    "deals",
    schemas.Deal,
    "deal",
    schemas.DealCreate,
    schemas.DealUpdate,
    json_columns=frozenset({"metadata"}),
)

# Each branch matches one prefix index of migration 005 (company_id, lower(column)).
CONTACT_SEARCH = sql.SQL(
    "(lower(email) LIKE %(prefix)s OR lower(first_name) LIKE %(prefix)s"
    " OR lower(last_name) LIKE %(prefix)s OR phone LIKE %(prefix)s)"
)


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching values that start with ``text`` (wildcards escaped)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def contact_filters(tag: str | None, q: str | None) -> list[Filter]:
    """The filters of GET /v1/contacts."""
    filters = []
    if tag is not None:
        filters.append(Filter(sql.SQL("tags @> ARRAY[%(tag)s]::text[]"), {"tag": tag}))
    if q is not None:
        filters.append(Filter(CONTACT_SEARCH, {"prefix": _like_prefix(q)}))
    return filters


def deal_filters(stage: schemas.DealStage | None, contact_id: UUID | None) -> list[Filter]:
    """The filters of GET /v1/deals."""
    filters = []
    if stage is not None:
        filters.append(Filter.equals("stage", stage))
    if contact_id is not None:
        filters.append(Filter.equals("contact_id", contact_id))
    return filters


PIPELINE_TOTALS = """
SELECT stage, count(*) AS count, coalesce(sum(value), 0) AS value
  FROM public.deals
 WHERE company_id = %(company_id)s
 GROUP BY stage
"""


async def pipeline(conn: TenantConnection, company_id: UUID) -> schemas.Pipeline:
    """Count and total value of the company's deals per stage (every stage, in order)."""
    rows = await (await conn.execute(PIPELINE_TOTALS, {"company_id": company_id})).fetchall()
    totals = {row["stage"]: row for row in rows}
    return schemas.Pipeline(
        stages=[
            schemas.PipelineStage(
                stage=stage,
                count=totals[stage]["count"] if stage in totals else 0,
                value=totals[stage]["value"] if stage in totals else Decimal(0),
            )
            for stage in schemas.DEAL_STAGES
        ]
    )


# Tags change in one statement (no read-modify-write race with another writer).
ADD_TAG = """
UPDATE public.contacts
   SET tags = CASE WHEN %(tag)s = ANY(tags) THEN tags ELSE array_append(tags, %(tag)s) END
 WHERE company_id = %(company_id)s AND id = %(id)s
RETURNING tags
"""

REMOVE_TAG = """
UPDATE public.contacts SET tags = array_remove(tags, %(tag)s)
 WHERE company_id = %(company_id)s AND id = %(id)s
RETURNING tags
"""


async def tag_contact(
    tx: TenantTransaction, contact_id: UUID, tag: str, *, add: bool = True
) -> list[str]:
    """Add ``tag`` to the contact (once), or remove it; the contact's tags after."""
    params = {"tag": tag, "company_id": tx.company_id, "id": contact_id}
    cursor = await tx.conn.execute(ADD_TAG if add else REMOVE_TAG, params)
    row = await cursor.fetchone()
    if row is None:
        raise not_found(CONTACTS.label)
    return list(row["tags"])


async def update_contact(tx: TenantTransaction, contact_id: UUID, changes: dict[str, Any]) -> Row:
    """Change the contact's fields in ``changes``; the contact as stored."""
    return await update_row(tx, CONTACTS, contact_id, changes)


async def create_deal(tx: TenantTransaction, values: dict[str, Any]) -> Row:
    """A new deal of the caller's company; the deal as stored."""
    return await create_row(tx, DEALS, values)


async def move_deal(tx: TenantTransaction, deal_id: UUID, stage: schemas.DealStage) -> Row:
    """Move the deal to ``stage``; the deal as stored."""
    return await update_row(tx, DEALS, deal_id, {"stage": stage})
