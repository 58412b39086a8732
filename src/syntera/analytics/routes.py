"""/v1/analytics/events."""

from __future__ import annotations

from fastapi import APIRouter

from syntera.analytics import service
from syntera.api.crud import add_crud_routes

events = APIRouter(prefix="/v1/analytics/events", tags=["analytics"])

# Append-only: events are recorded and read, never changed or deleted through the API.
add_crud_routes(
    events,
    service.EVENTS,
    filters=service.event_filters,
    creation_values=service.recorder,
    routes=("create", "read", "list"),
)

routers = [events]
