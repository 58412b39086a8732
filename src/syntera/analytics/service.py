"""Analytics events: recorded by members (as themselves) and by the service, never
changed or deleted through the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from syntera.analytics.schemas import Event, EventCreate, EventType
from syntera.db.tables import Filter
from syntera.kit.resources import Resource
from syntera.unit_of_work import TenantTransaction

EVENTS = Resource.of(
    "analytics_events",
    Event,
    "analytics event",
    EventCreate,
    json_columns=frozenset({"properties"}),
)


def sender_of(tx: TenantTransaction) -> dict[str, Any]:
    """An event records who sent it (the database allows no one else's id)."""
    return {"user_id": tx.user_id}


def event_filters(
    event_type: EventType | None,
    agent_id: UUID | None,
    contact_id: UUID | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Filter]:
    """The filters of GET /v1/analytics/events."""
    wanted = {"event_type": event_type, "agent_id": agent_id, "contact_id": contact_id}
    filters = [Filter.equals(column, value) for column, value in wanted.items() if value]
    if since is not None:
        filters.append(Filter(sql.SQL("created_at >= %(since)s"), {"since": since}))
    if until is not None:
        filters.append(Filter(sql.SQL("created_at < %(until)s"), {"until": until}))
    return filters
