"""Call recordings and call history, listed by start time."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query

from syntera.api.crud import Resource
from syntera.calls.schemas import (
    Call,
    CallCreate,
    CallStatus,
    CallUpdate,
    Recording,
    RecordingCreate,
    RecordingUpdate,
)
from syntera.db.tables import Filter, TenantTable

RECORDINGS = Resource(
    TenantTable(
        "call_recordings",
        tuple(Recording.model_fields),
        json_columns=frozenset({"metadata"}),
        time_column="started_at",
    ),
    Recording,
    "call recording",
    RecordingCreate,
    RecordingUpdate,
)

CALLS = Resource(
    TenantTable(
        "call_history",
        tuple(Call.model_fields),
        json_columns=frozenset({"metadata"}),
        time_column="started_at",
    ),
    Call,
    "call",
    CallCreate,
    CallUpdate,
)


async def call_filters(
    agent_id: Annotated[UUID | None, Query(description="Handled by this agent.")] = None,
    contact_id: Annotated[UUID | None, Query(description="With this contact.")] = None,
    status: Annotated[CallStatus | None, Query(description="In this status.")] = None,
) -> list[Filter]:
    """The filters of GET /v1/calls/history."""
    wanted = {"agent_id": agent_id, "contact_id": contact_id, "status": status}
    return [Filter.equals(column, value) for column, value in wanted.items() if value is not None]


async def recording_filters(
    agent_id: Annotated[UUID | None, Query(description="Handled by this agent.")] = None,
    contact_id: Annotated[UUID | None, Query(description="With this contact.")] = None,
) -> list[Filter]:
    """The filters of GET /v1/calls/recordings."""
    wanted = {"agent_id": agent_id, "contact_id": contact_id}
    return [Filter.equals(column, value) for column, value in wanted.items() if value is not None]
