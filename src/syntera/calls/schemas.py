"""Call recordings and call history as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from syntera.kit.schemas import ExternalId, Input, JsonObject, Output, Phone, StorableTime, Url

Seconds = Annotated[int, Field(ge=0, le=7 * 24 * 3600)]
Transcript = Annotated[str, Field(max_length=1_000_000)]
Direction = Literal["inbound", "outbound"]
CallStatus = Literal[
    "queued", "ringing", "in-progress", "completed", "failed", "busy", "no-answer", "canceled"
]


class RecordingCreate(Input):
    recording_url: Url
    agent_id: UUID | None = None
    contact_id: UUID | None = None
    conversation_id: ExternalId | None = None
    duration_seconds: Seconds | None = None
    transcript: Transcript | None = None
    started_at: StorableTime | None = None
    ended_at: StorableTime | None = None
    metadata: JsonObject = Field(default_factory=dict)


class RecordingUpdate(Input):
    recording_url: Url | None = None
    agent_id: UUID | None = None
    contact_id: UUID | None = None
    conversation_id: ExternalId | None = None
    duration_seconds: Seconds | None = None
    transcript: Transcript | None = None
    started_at: StorableTime | None = None
    ended_at: StorableTime | None = None
    metadata: JsonObject | None = None


class Recording(Output):
    id: UUID
    company_id: UUID
    agent_id: UUID | None
    contact_id: UUID | None
    conversation_id: str | None
    recording_url: str
    duration_seconds: int | None
    transcript: str | None
    started_at: datetime
    ended_at: datetime | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CallCreate(Input):
    direction: Direction
    status: CallStatus = "completed"
    agent_id: UUID | None = None
    contact_id: UUID | None = None
    recording_id: UUID | None = None
    conversation_id: ExternalId | None = None
    from_number: Phone | None = None
    to_number: Phone | None = None
    duration_seconds: Seconds | None = None
    started_at: StorableTime | None = None
    ended_at: StorableTime | None = None
    metadata: JsonObject = Field(default_factory=dict)


class CallUpdate(Input):
    direction: Direction | None = None
    status: CallStatus | None = None
    agent_id: UUID | None = None
    contact_id: UUID | None = None
    recording_id: UUID | None = None
    conversation_id: ExternalId | None = None
    from_number: Phone | None = None
    to_number: Phone | None = None
    duration_seconds: Seconds | None = None
    started_at: StorableTime | None = None
    ended_at: StorableTime | None = None
    metadata: JsonObject | None = None


class Call(Output):
    id: UUID
    company_id: UUID
    agent_id: UUID | None
    contact_id: UUID | None
    recording_id: UUID | None
    conversation_id: str | None
    direction: Direction
    status: CallStatus
    from_number: str | None
    to_number: str | None
    duration_seconds: int | None
    started_at: datetime
    ended_at: datetime | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
