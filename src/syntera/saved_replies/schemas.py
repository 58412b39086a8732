"""Saved replies as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import StringConstraints

from syntera.kit.schemas import Input, Output

Shortcut = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]{1,32}$"),
]
ReplyContent = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class SavedReplyCreate(Input):
    shortcut: Shortcut
    content: ReplyContent


class SavedReplyUpdate(Input):
    shortcut: Shortcut | None = None
    content: ReplyContent | None = None


class SavedReply(Output):
    id: UUID
    company_id: UUID
    shortcut: str
    content: str
    created_at: datetime
    updated_at: datetime
