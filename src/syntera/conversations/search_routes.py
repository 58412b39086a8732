"""GET /v1/conversations/search: full-text search over every message of the company."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from syntera.api.deps import Member
from syntera.conversations import schemas, search
from syntera.conversations.search_schemas import SearchResults
from syntera.kit.schemas import StorableTime

MAX_QUERY = 256
MAX_PAGE = 50

# Included before /v1/conversations/{conversation_id}, which would take "search" for an id.
router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.get("/search", response_model=SearchResults)
async def search_messages(
    tx: Member,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY,
            description='Words to find (web-search syntax: "a phrase", `or`, `-word`).',
        ),
    ],
    channel: Annotated[schemas.Channel | None, Query()] = None,
    agent_id: Annotated[UUID | None, Query()] = None,
    contact_id: Annotated[UUID | None, Query()] = None,
    since: Annotated[
        StorableTime | None, Query(alias="from", description="Messages at or after.")
    ] = None,
    until: Annotated[StorableTime | None, Query(alias="to", description="Messages before.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Hits per page.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=300, description="`next_cursor` of the previous page.")
    ] = None,
) -> SearchResults:
    """Your company's messages that hold the words of `q`, best first (the newest 100
    matches are ranked), each with its best passage highlighted; on the first page, the
    contacts whose name or email contains `q` too."""
    query = search.SearchQuery(
        q=q, channel=channel, agent_id=agent_id, contact_id=contact_id,
        since=since, until=until, limit=limit,
        cursor=search.SearchCursor.decode(cursor) if cursor is not None else None,
    )  # fmt: skip
    return await search.search(tx, query)


routers = [router]
