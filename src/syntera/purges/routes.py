"""A contact's rights and a company's data leaving: GET /v1/contacts/{id}/export,
POST /v1/contacts/{id}/erase and GET /v1/purges/{id}."""

from __future__ import annotations

from typing import Annotated, cast
from uuid import UUID

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from syntera.api.deps import Manager, Member
from syntera.purges import export, service
from syntera.purges.registry import StoredElsewhere
from syntera.purges.schemas import Purge

erasure = APIRouter(prefix="/v1/contacts", tags=["contacts"])
purges = APIRouter(prefix="/v1/purges", tags=["contacts"])


def stored_elsewhere_of(request: Request) -> StoredElsewhere:
    """The stores outside PostgreSQL of this process (made by the app's lifespan)."""
    return cast(StoredElsewhere, request.app.state.stored_elsewhere)


@erasure.get(
    "/{contact_id}/export",
    responses={200: {"description": "One JSON document: the contact, their deals, "
                     "analytics events, calls, and conversations with every message.",
                     "content": {"application/json": {}}}},
)  # fmt: skip
async def export_contact(
    request: Request, tx: Member, contact_id: Annotated[UUID, Path()]
) -> StreamingResponse:
    """Everything stored about a contact (the right of access), streamed."""
    records = await export.read_records(tx, contact_id)
    document = export.export_document(records, stored_elsewhere_of(request), contact_id)
    filename = f"contact-{contact_id}.json"
    return StreamingResponse(
        document,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


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
