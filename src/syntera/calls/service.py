"""Call recordings and call history, listed by start time."""

from __future__ import annotations

from syntera.calls.schemas import (
    Call,
    CallCreate,
    CallUpdate,
    Recording,
    RecordingCreate,
    RecordingUpdate,
)
from syntera.db.tables import Filter, TenantTable
from syntera.kit.resources import Resource

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


def equal_filters(**wanted: object) -> list[Filter]:
    """``column = value`` for every column given a value (the filters of the call lists)."""
    return [Filter.equals(column, value) for column, value in wanted.items() if value is not None]
