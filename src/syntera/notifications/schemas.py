"""Notifications as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field

from syntera.kit.schemas import Input, JsonObject, Name, Output, Text

NotificationType = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_.]*$")]


class NotificationCreate(Input):
    """Sent by the system (service key) to one member of the company."""

    user_id: UUID
    type: NotificationType
    title: Name
    body: Text | None = None
    data: JsonObject = Field(default_factory=dict)


class NotificationUpdate(Input):
    read: bool = Field(description="true marks it read, false unread.")


class Notification(Output):
    id: UUID
    company_id: UUID
    user_id: UUID
    type: str
    title: str
    body: str | None
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


class UnreadCount(Output):
    unread: int
