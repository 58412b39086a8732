"""A purge as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from syntera.kit.schemas import Output


class Purge(Output):
    id: UUID
    kind: Literal["company", "contact"]
    contact_id: UUID | None = None
    status: Literal["pending", "running", "completed", "failed"]
    steps: dict[str, dict[str, Any]] = Field(
        description="Per store finished: what was removed there (counts)."
    )
    attempts: int
    last_error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
