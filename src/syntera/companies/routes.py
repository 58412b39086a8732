"""/v1/companies and /v1/team."""

from __future__ import annotations

from fastapi import APIRouter, Response

from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Manager, Member, SignedIn
from syntera.companies import schemas, service

companies = APIRouter(prefix="/v1/companies", tags=["companies"])
team = APIRouter(prefix="/v1/team", tags=["team"])
invitations = APIRouter(prefix="/v1/team/invitations", tags=["team"])
my_invitations = APIRouter(prefix="/v1/invitations", tags=["team"])


@companies.post("", status_code=201, response_model=schemas.Company)
async def create_company(tx: SignedIn, body: schemas.CompanyCreate) -> schemas.Company:
    """Create a company; you become its owner (a user belongs to one company)."""
    return await service.create_company(tx, body)


@companies.get("/current", response_model=schemas.Company)
async def read_company(tx: Member) -> schemas.Company:
    """Your company."""
    return await service.current_company(tx)


@companies.patch("/current", response_model=schemas.Company)
async def update_company(tx: Manager, body: schemas.CompanyUpdate) -> schemas.Company:
    """Rename your company (owner or admin)."""
    return await service.update_company(tx, body)


@companies.delete("/current", status_code=204)
async def delete_company(tx: Member) -> Response:
    """Delete your company and all its data (owner only)."""
    await service.delete_company(tx)
    return Response(status_code=204)


@team.patch("/{row_id}", response_model=schemas.TeamMember)
async def change_member_role(
    tx: Manager, row_id: RowId, body: schemas.TeamMemberUpdate
) -> schemas.TeamMember:
    """Make a teammate an admin or a plain user (owner or admin; not yourself, not the
    owner)."""
    return await service.change_role(tx, row_id, body)


@team.delete("/{row_id}", status_code=204)
async def remove_member(tx: Manager, row_id: RowId) -> Response:
    """Remove a teammate from the company (owner or admin; not yourself, not the owner).
    They keep their account; their active conversations are unassigned once the removal
    has committed (`conversation.updated` each), by the departures worker of any API or
    `syntera worker` process."""
    await service.remove_member(tx, row_id)
    return Response(status_code=204)


add_crud_routes(team, service.MEMBERS, routes=("read", "list"))
add_crud_routes(
    invitations,
    service.INVITATIONS,
    managers_write=True,
    managers_read=True,
    creation_values=service.invited_by_caller,
    routes=("create", "delete", "list"),
)


@my_invitations.get("", response_model=schemas.PendingInvitations)
async def list_my_invitations(tx: SignedIn) -> schemas.PendingInvitations:
    """The invitations addressed to your email that you may accept, newest first."""
    return schemas.PendingInvitations(data=await service.pending_invitations(tx))


@my_invitations.get("/{row_id}", response_model=schemas.PendingInvitation)
async def read_my_invitation(tx: SignedIn, row_id: RowId) -> schemas.PendingInvitation:
    """One invitation addressed to you, while it can be accepted."""
    return await service.access_pending_invitation(tx, row_id)


@my_invitations.post("/{row_id}/accept", response_model=schemas.TeamMember)
async def accept_invitation(tx: SignedIn, row_id: RowId) -> schemas.TeamMember:
    """Join the inviting company with the invited role (signing up alone joins none).
    409 if you belong to a company already; 404 for an invitation that is not yours,
    was accepted, or expired."""
    return await service.accept_invitation(tx, row_id)


routers = [companies, invitations, my_invitations, team]
