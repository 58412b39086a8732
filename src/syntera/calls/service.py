"""Call recordings and call history, listed by start time."""

from __future__ import annotations

from syntera.calls import schemas
from syntera.kit.resources import Resource

# Calls are listed by when they started.
RECORDINGS = Resource.of(
    "call_recordings",
    schemas.Recording,
    "call recording",
    schemas.RecordingCreate,
    schemas.RecordingUpdate,
    json_columns=frozenset({"metadata"}),
    time_column="started_at",
)
CALLS = Resource.of(
    "call_history",
    schemas.Call,
    "call",
    schemas.CallCreate,
    schemas.CallUpdate,
    json_columns=frozenset({"metadata"}),
    time_column="started_at",
)
