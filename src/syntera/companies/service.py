"""Creating a company, and managing its members and invitations.

Membership rules live in the database (migration 004): whoever creates a company becomes
its owner; roles change only by an owner or admin, never one's own, never to or from
owner; members leave only through remove_team_member().
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import sql

from syntera.agents.service import invalidate_public_key
from syntera.companies import schemas
from syntera.companies.schemas import (
    Company,
    CompanyCreate,
    CompanyUpdate,
    Invitation,
    InvitationCreate,
    TeamMember,
    TeamMemberUpdate,
)
from syntera.errors import Conflict, Forbidden, field_error, not_found
from syntera.kit.resources import Resource
from syntera.unit_of_work import TenantTransaction

MEMBERS = Resource.of("users", TeamMember, "member")
INVITATIONS = Resource.of("invitations", Invitation, "invitation", InvitationCreate)

COMPANY_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, Company.model_fields))

CREATE_COMPANY = sql.SQL(
    "INSERT INTO public.companies (name, owner_id) VALUES (%(name)s, auth.uid())"
    " RETURNING {columns}"
).format(columns=COMPANY_COLUMNS)

READ_COMPANY = sql.SQL("SELECT {columns} FROM public.companies WHERE id = %(id)s").format(
    columns=COMPANY_COLUMNS
)

DELETE_COMPANY = "DELETE FROM public.companies WHERE id = %(id)s"
KEY_DIGESTS = """
SELECT public_api_key FROM public.agent_configs
WHERE company_id = %(id)s AND public_api_key IS NOT NULL
"""

REMOVE_MEMBER = "SELECT public.remove_team_member(%(id)s)"


async def create_company(tx: TenantTransaction, body: CompanyCreate) -> Company:
    """A new company owned by the caller, who must not belong to one yet."""
    if tx.membership is not None:
        raise Conflict("you already belong to a company; a user has one")
    row = await (await tx.conn.execute(CREATE_COMPANY, {"name": body.name})).fetchone()
    assert row is not None
    return Company.model_validate(row)


async def current_company(tx: TenantTransaction) -> Company:
    row = await (await tx.conn.execute(READ_COMPANY, {"id": tx.company_id})).fetchone()
    if row is None:  # the service named a company that does not exist
        raise not_found("Company")
    return Company.model_validate(row)


async def update_company(tx: TenantTransaction, body: CompanyUpdate) -> Company:
    """Rename the company or set its monthly token budget (null: unlimited)."""
    changes = body.changes()
    for field in ("name", "auto_assign_handoffs"):
        if field in changes and changes[field] is None:
            raise field_error(field, "may not be null")
    if not changes:
        return await current_company(tx)
    statement = sql.SQL("UPDATE public.companies SET {sets} WHERE id = %(id)s RETURNING {columns}")
    sets = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in changes
    )
    params = {**changes, "id": tx.company_id}
    query = statement.format(sets=sets, columns=COMPANY_COLUMNS)
    row = await (await tx.conn.execute(query, params)).fetchone()
    if row is None:
        raise not_found("Company")
    return Company.model_validate(row)


async def delete_company(tx: TenantTransaction) -> None:
    """Delete the company and, by cascade, all its data (owner only)."""
    if tx.membership is None or tx.membership.role != "owner":
        raise Forbidden("only the company's owner may delete it")
    digests = await (await tx.conn.execute(KEY_DIGESTS, {"id": tx.company_id})).fetchall()
    cursor = await tx.conn.execute(DELETE_COMPANY, {"id": tx.company_id})
    if cursor.rowcount != 1:
        raise not_found("Company")
    # Its widget keys stop working at the commit, not when their cached agent expires;
    # the rest of its data outside PostgreSQL goes with the purge the delete recorded.
    for row in digests:
        invalidate_public_key(tx, row["public_api_key"])


def invited_by_caller(tx: TenantTransaction) -> dict[str, Any]:
    return {"invited_by": tx.user_id}


async def change_role(tx: TenantTransaction, user_id: UUID, body: TeamMemberUpdate) -> TeamMember:
    row = await MEMBERS.table.update(tx.conn, tx.company_id, user_id, {"role": body.role})
    if row is None:
        raise not_found("Member")
    return TeamMember.model_validate(row)


async def remove_member(tx: TenantTransaction, user_id: UUID) -> None:
    """The member leaves the company and keeps their account."""
    await tx.conn.execute(REMOVE_MEMBER, {"id": user_id})


PENDING_INVITATIONS = "SELECT * FROM public.pending_invitations()"

PENDING_INVITATION = "SELECT * FROM public.pending_invitations() WHERE id = %(id)s"

ACCEPT_INVITATION = "SELECT * FROM public.accept_invitation(%(id)s)"


async def pending_invitations(tx: TenantTransaction) -> list[schemas.PendingInvitation]:
    """The invitations addressed to the caller's email that they may accept (at most the
    newest 100; an invitation lasts 14 days)."""
    rows = await (await tx.conn.execute(PENDING_INVITATIONS)).fetchall()
    return [schemas.PendingInvitation.model_validate(row) for row in rows]


async def access_pending_invitation(
    tx: TenantTransaction, invitation_id: UUID
) -> schemas.PendingInvitation:
    """The invitation if it is addressed to the caller and can still be accepted; else
    not found (the same answer as for an invitation that does not exist)."""
    cursor = await tx.conn.execute(PENDING_INVITATION, {"id": invitation_id})
    row = await cursor.fetchone()
    if row is None:
        raise not_found("Invitation")
    return schemas.PendingInvitation.model_validate(row)


async def accept_invitation(tx: TenantTransaction, invitation_id: UUID) -> schemas.TeamMember:
    """Join the company of an invitation addressed to the caller, with its role. Another
    person's invitation is, for the caller, not found; a caller who belongs to a company
    already must leave it first."""
    await access_pending_invitation(tx, invitation_id)
    if tx.membership is not None:
        raise Conflict("you already belong to a company; a user has one")
    row = await (await tx.conn.execute(ACCEPT_INVITATION, {"id": invitation_id})).fetchone()
    if row is None:  # accepted or expired between the two statements
        raise not_found("Invitation")
    return schemas.TeamMember.model_validate(row)
