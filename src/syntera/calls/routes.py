"""/v1/calls/recordings and /v1/calls/history."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from syntera.api.crud import add_crud_routes
from syntera.calls import service
from syntera.calls.schemas import CallStatus
from syntera.db.tables import Filter, equal_filters

recordings = APIRouter(prefix="/v1/calls/recordings", tags=["calls"])
history = APIRouter(prefix="/v1/calls/history", tags=["calls"])

AgentFilter = Annotated[UUID | None, Query(description="Handled by this agent.")]
ContactFilter = Annotated[UUID | None, Query(description="With this contact.")]


async def call_filters(
    agent_id: AgentFilter = None,
    contact_id: ContactFilter = None,
    status: Annotated[CallStatus | None, Query(description="In this status.")] = None,
) -> list[Filter]:
    """The filters of GET /v1/calls/history."""
    return equal_filters(agent_id=agent_id, contact_id=contact_id, status=status)


async def recording_filters(
    agent_id: AgentFilter = None, contact_id: ContactFilter = None
) -> list[Filter]:
    """The filters of GET /v1/calls/recordings."""
    return equal_filters(agent_id=agent_id, contact_id=contact_id)


add_crud_routes(recordings, service.RECORDINGS, filters=recording_filters)
add_crud_routes(history, service.CALLS, filters=call_filters)

routers = [recordings, history]
