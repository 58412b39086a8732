"""/v1/analytics/events."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from syntera.analytics import service
from syntera.analytics.schemas import EventType
from syntera.api.crud import add_crud_routes
from syntera.db.tables import Filter
from syntera.kit.schemas import StorableTime

events = APIRouter(prefix="/v1/analytics/events", tags=["analytics"])


async def event_filters(
    event_type: Annotated[EventType | None, Query(description="Of this type.")] = None,
    agent_id: Annotated[UUID | None, Query(description="About this agent.")] = None,
    contact_id: Annotated[UUID | None, Query(description="About this contact.")] = None,
    since: Annotated[StorableTime | None, Query(description="At or after this time.")] = None,
    until: Annotated[StorableTime | None, Query(description="Before this time.")] = None,
) -> list[Filter]:
    """The filters of GET /v1/analytics/events."""
    return service.event_filters(event_type, agent_id, contact_id, since, until)


# Append-only: events are recorded and read, never changed or deleted through the API.
add_crud_routes(
    events,
    service.EVENTS,
    filters=event_filters,
    creation_values=service.sender_of,
    routes=("create", "read", "list"),
)

routers = [events]
