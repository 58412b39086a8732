"""Analytics events: recorded by members (as themselves) and by the service, never
changed or deleted through the API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Query
from psycopg import sql

from syntera.analytics.schemas import Event, EventCreate, EventType
from syntera.api.crud import Resource
from syntera.api.deps import Tenant
from syntera.db.tables import Filter, TenantTable

EVENTS = Resource(
    TenantTable(
        "analytics_events", tuple(Event.model_fields), json_columns=frozenset({"properties"})
    ),
    Event,
    "analytics event",
    EventCreate,
)


def recorder(tenant: Tenant) -> dict[str, Any]:
    """An event records who sent it (the database allows no one else's id)."""
    return {"user_id": tenant.user_id}


async def event_filters(
    event_type: Annotated[EventType | None, Query(description="Of this type.")] = None,
    agent_id: Annotated[UUID | None, Query(description="About this agent.")] = None,
    contact_id: Annotated[UUID | None, Query(description="About this contact.")] = None,
    since: Annotated[datetime | None, Query(description="At or after this time.")] = None,
    until: Annotated[datetime | None, Query(description="Before this time.")] = None,
) -> list[Filter]:
    """The filters of GET /v1/analytics/events."""
    wanted = {"event_type": event_type, "agent_id": agent_id, "contact_id": contact_id}
    filters = [Filter.equals(column, value) for column, value in wanted.items() if value]
    if since is not None:
        filters.append(Filter(sql.SQL("created_at >= %(since)s"), {"since": since}))
    if until is not None:
        filters.append(Filter(sql.SQL("created_at < %(until)s"), {"until": until}))
    return filters
