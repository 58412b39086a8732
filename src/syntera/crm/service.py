"""Contacts and deals: the tables, the list filters and the pipeline totals."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import Query
from psycopg import sql

from syntera.api.crud import Resource
from syntera.crm.schemas import (
    DEAL_STAGES,
    Contact,
    ContactCreate,
    ContactUpdate,
    Deal,
    DealCreate,
    DealStage,
    DealUpdate,
    Pipeline,
    PipelineStage,
)
from syntera.db.postgres import TenantConnection
from syntera.db.tables import Filter, TenantTable

CONTACTS = Resource(
    TenantTable(
        "contacts",
        tuple(Contact.model_fields),
        json_columns=frozenset({"metadata"}),
    ),
    Contact,
    "contact",
    ContactCreate,
    ContactUpdate,
)

DEALS = Resource(
    TenantTable("deals", tuple(Deal.model_fields), json_columns=frozenset({"metadata"})),
    Deal,
    "deal",
    DealCreate,
    DealUpdate,
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


async def contact_filters(
    tag: Annotated[
        str | None, Query(min_length=1, max_length=50, description="Has this tag.")
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Prefix of email, name or phone."),
    ] = None,
) -> list[Filter]:
    """The filters of GET /v1/contacts."""
    filters = []
    if tag is not None:
        filters.append(Filter(sql.SQL("tags @> ARRAY[%(tag)s]::text[]"), {"tag": tag}))
    if q is not None:
        filters.append(Filter(CONTACT_SEARCH, {"prefix": _like_prefix(q)}))
    return filters


async def deal_filters(
    stage: Annotated[DealStage | None, Query(description="In this stage.")] = None,
    contact_id: Annotated[UUID | None, Query(description="Of this contact.")] = None,
) -> list[Filter]:
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


async def pipeline(conn: TenantConnection, company_id: UUID) -> Pipeline:
    """Count and total value of the company's deals per stage (every stage, in order)."""
    rows = await (await conn.execute(PIPELINE_TOTALS, {"company_id": company_id})).fetchall()
    totals = {row["stage"]: row for row in rows}
    return Pipeline(
        stages=[
            PipelineStage(
                stage=stage,
                count=totals[stage]["count"] if stage in totals else 0,
                value=totals[stage]["value"] if stage in totals else Decimal(0),
            )
            for stage in DEAL_STAGES
        ]
    )
