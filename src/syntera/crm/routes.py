"""/v1/contacts and /v1/deals."""

from __future__ import annotations

from fastapi import APIRouter

from syntera.api.crud import add_crud_routes
from syntera.api.deps import Member
from syntera.crm import service
from syntera.crm.schemas import Pipeline

contacts = APIRouter(prefix="/v1/contacts", tags=["contacts"])
deals = APIRouter(prefix="/v1/deals", tags=["deals"])


@deals.get("/pipeline", response_model=Pipeline)
async def deal_pipeline(tenant: Member) -> Pipeline:
    """Number and total value of your company's deals in each stage."""
    return await service.pipeline(tenant.conn, tenant.company_id)


add_crud_routes(contacts, service.CONTACTS, filters=service.contact_filters)
add_crud_routes(deals, service.DEALS, filters=service.deal_filters)

routers = [contacts, deals]
