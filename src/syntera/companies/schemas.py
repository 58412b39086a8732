"""Companies, members and invitations as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, Field

from syntera.kit.schemas import Email, Input, IntentName, Name, Output
from syntera.tenancy import MemberRole

AssignableRole = Literal["user", "admin"]  # the owner role is never granted


def _distinct(labels: list[str]) -> list[str]:
    if len(set(labels)) != len(labels):
        raise ValueError("must be distinct")
    return labels


IntentLabels = Annotated[
    list[IntentName], Field(min_length=1, max_length=20), AfterValidator(_distinct)
]


class CompanyCreate(Input):
    name: Name


class CompanyUpdate(Input):
    name: Name | None = None
    intent_labels: IntentLabels | None = Field(
        default=None,
        description="The intents visitors' messages are sorted into (`[a-z0-9_-]{1,32}`, "
        "distinct); null: the defaults question, complaint, purchase, cancel, human.",
    )
    monthly_token_budget: int | None = Field(
        default=None,
        ge=0,
        le=10**15,
        description="Tokens the company's agents may use per calendar month (UTC); null: "
        "unlimited. When spent, conversations pass to people.",
    )
    auto_assign_handoffs: bool | None = Field(
        default=None,
        description="A conversation handed to people goes to the online member with the "
        "fewest open conversations (else it waits in needs_person).",
    )


class Company(Output):
    id: UUID
    name: str
    owner_id: UUID | None
    subscription_tier: Literal["starter", "professional", "enterprise"]
    intent_labels: list[str] | None = Field(
        default=None, description="Null: the default intents (see CompanyUpdate)."
    )
    monthly_token_budget: int | None = None
    auto_assign_handoffs: bool = False
    created_at: datetime
    updated_at: datetime


class TeamMember(Output):
    id: UUID
    company_id: UUID
    email: str
    name: str = Field(
        description="How teammates see them: `full_name` (else `name`) from their Supabase "
        "Auth user_metadata, which they set with `PUT /auth/v1/user`; else their email."
    )
    role: MemberRole
    created_at: datetime
    updated_at: datetime


class TeamMemberUpdate(Input):
    role: AssignableRole


class InvitationCreate(Input):
    email: Email
    role: AssignableRole = "user"


class Invitation(Output):
    id: UUID
    company_id: UUID
    email: str
    role: AssignableRole
    invited_by: UUID | None
    accepted_at: datetime | None
    expires_at: datetime
    created_at: datetime


class PendingInvitation(Output):
    """An invitation addressed to the signed-in user, waiting to be accepted."""

    id: UUID
    company_id: UUID
    company_name: str
    role: AssignableRole
    invited_by: UUID | None
    expires_at: datetime
    created_at: datetime


class PendingInvitations(Output):
    data: list[PendingInvitation]
    next_cursor: str | None = None
