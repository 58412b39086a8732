"""POST /v1/contacts/{id}/erase and GET /v1/purges/{id}."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path

from syntera.api.deps import Manager
from syntera.purges import service
from syntera.purges.schemas import Purge

erasure = APIRouter(prefix="/v1/contacts", tags=["contacts"])
purges = APIRouter(prefix="/v1/purges", tags=["contacts"])


@erasure.post("/{contact_id}/erase", status_code=202, response_model=Purge)
async def erase_contact(
    tx: Manager, contact_id: Annotated[UUID, Path(description="The contact's id.")]
) -> Purge:
    """The right to erasure (owners and admins): the contact, their analytics events,
    calls and pending workflow events go at once (their deals stay, without them); their
    conversations and messages go through the purge returned, whose progress
    `GET /v1/purges/{id}` shows."""
    return await service.erase_contact(tx, contact_id)


@purges.get("/{purge_id}", response_model=Purge)
async def read_purge(
    tx: Manager, purge_id: Annotated[UUID, Path(description="The purge's id.")]
) -> Purge:
    """A contact erasure's status, with what each store removed."""
    return await service.read_purge(tx, purge_id)


routers = [erasure, purges]
