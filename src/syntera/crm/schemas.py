"""Contacts and deals as the API reads and writes them."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from syntera.kit.schemas import Email, Input, JsonObject, Name, Output, Phone, Tags

DealStage = Literal["lead", "qualified", "proposal", "negotiation", "closed-won", "closed-lost"]
DEAL_STAGES: tuple[DealStage, ...] = (
    "lead", "qualified", "proposal", "negotiation", "closed-won", "closed-lost",
)  # fmt: skip
Money = Annotated[Decimal, Field(ge=0, le=Decimal("9999999999.99"), decimal_places=2)]
Probability = Annotated[int, Field(ge=0, le=100)]


class ContactCreate(Input):
    email: Email | None = None
    phone: Phone | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    tags: Tags = Field(default_factory=list)
    metadata: JsonObject = Field(default_factory=dict)


class ContactUpdate(Input):
    email: Email | None = None
    phone: Phone | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    tags: Tags | None = None
    metadata: JsonObject | None = None


class Contact(Output):
    id: UUID
    company_id: UUID
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    tags: list[str]
    metadata: JsonObject
    created_at: datetime
    updated_at: datetime


class DealCreate(Input):
    title: Name
    contact_id: UUID | None = None
    value: Money | None = None
    stage: DealStage = "lead"
    probability: Probability = 0
    expected_close_date: date | None = None
    metadata: JsonObject = Field(default_factory=dict)


class DealUpdate(Input):
    title: Name | None = None
    contact_id: UUID | None = None
    value: Money | None = None
    stage: DealStage | None = None
    probability: Probability | None = None
    expected_close_date: date | None = None
    metadata: JsonObject | None = None


class Deal(Output):
    id: UUID
    company_id: UUID
    contact_id: UUID | None
    title: str
    value: Decimal | None
    stage: DealStage
    probability: int
    expected_close_date: date | None
    metadata: JsonObject
    created_at: datetime
    updated_at: datetime


class PipelineStage(Output):
    stage: DealStage
    count: int
    value: Decimal = Field(description="Sum of the deals' values (deals without one count 0).")


class Pipeline(Output):
    stages: list[PipelineStage]
