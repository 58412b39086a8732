"""What `GET /v1/conversations/search` answers."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from syntera.conversations.schemas import SenderType


class SearchHit(BaseModel):
    """A message that matches, with the matching words highlighted."""

    conversation_id: str
    message_id: str
    sender_type: SenderType
    created_at: datetime
    contact_id: UUID | None
    contact_name: str = Field(
        description="The contact's name (else email), or `Visitor <short id>` for a chat "
        "without a contact."
    )
    fragment: str = Field(
        description="The best passage of the message, HTML-escaped, the matching words "
        "in `<mark>…</mark>`."
    )
    score: float = Field(description="Relevance (ts_rank_cd): higher is better.")


class SearchContact(BaseModel):
    """A contact whose name or email holds the query."""

    id: UUID
    name: str
    email: str | None


class SearchResults(BaseModel):
    """One page of matching messages, best first; `contacts` on the first page only."""

    items: list[SearchHit]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same `q` and filters) for the next page."
    )
    contacts: list[SearchContact] = Field(
        default_factory=list,
        description="Up to 5 contacts whose name or email contains `q` (from 3 characters).",
    )
