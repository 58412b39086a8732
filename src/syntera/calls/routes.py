"""/v1/calls/recordings and /v1/calls/history."""

from __future__ import annotations

from fastapi import APIRouter

from syntera.api.crud import add_crud_routes
from syntera.calls import service

recordings = APIRouter(prefix="/v1/calls/recordings", tags=["calls"])
history = APIRouter(prefix="/v1/calls/history", tags=["calls"])

add_crud_routes(recordings, service.RECORDINGS, filters=service.recording_filters)
add_crud_routes(history, service.CALLS, filters=service.call_filters)

routers = [recordings, history]
