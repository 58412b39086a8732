"""The paging query parameters every list of /v1 accepts (the pages themselves are in
``syntera.kit.pagination``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from syntera.errors import field_error
from syntera.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, Cursor, PageRequest


async def page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.")] = (
        DEFAULT_LIMIT
    ),
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip (instead of a cursor).")
    ] = 0,
    count: Annotated[
        str | None, Query(pattern="^exact$", description="`exact` adds the total.")
    ] = None,
) -> PageRequest:
    """The paging parameters every list accepts."""
    if cursor is not None and offset:
        raise field_error("offset", "use either cursor or offset, not both")
    decoded = Cursor.decode(cursor) if cursor is not None else None
    return PageRequest(limit, decoded, offset, count == "exact")
