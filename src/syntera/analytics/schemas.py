"""Analytics events as the API records and lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field

from syntera.kit.schemas import ExternalId, Input, JsonObject, Output

EventType = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_.]{0,99}$",
        description="Lower case, dot-separated: `conversation.started`.",
    ),
]


class EventCreate(Input):
    event_type: EventType
    agent_id: UUID | None = None
    contact_id: UUID | None = None
    conversation_id: ExternalId | None = None
    properties: JsonObject = Field(default_factory=dict)


class Event(Output):
    id: UUID
    company_id: UUID
    event_type: str
    agent_id: UUID | None
    contact_id: UUID | None
    user_id: UUID | None
    conversation_id: str | None
    properties: dict[str, Any]
    created_at: datetime
