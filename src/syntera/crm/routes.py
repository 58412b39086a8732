"""/v1/contacts and /v1/deals."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from syntera.api.crud import add_crud_routes
from syntera.api.deps import Member
from syntera.crm import service
from syntera.crm.schemas import DealStage, Pipeline
from syntera.db.tables import Filter

contacts = APIRouter(prefix="/v1/contacts", tags=["contacts"])
deals = APIRouter(prefix="/v1/deals", tags=["deals"])


@deals.get("/pipeline", response_model=Pipeline)
async def deal_pipeline(tx: Member) -> Pipeline:
    """Number and total value of your company's deals in each stage."""
    return await service.pipeline(tx.conn, tx.company_id)


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
    return service.contact_filters(tag, q)


async def deal_filters(
    stage: Annotated[DealStage | None, Query(description="In this stage.")] = None,
    contact_id: Annotated[UUID | None, Query(description="Of this contact.")] = None,
) -> list[Filter]:
    """The filters of GET /v1/deals."""
    return service.deal_filters(stage, contact_id)


add_crud_routes(contacts, service.CONTACTS, filters=contact_filters)
add_crud_routes(deals, service.DEALS, filters=deal_filters)

routers = [contacts, deals]
