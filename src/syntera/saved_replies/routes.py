"""/v1/saved-replies: the team's saved replies (every member creates, changes, deletes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from syntera.api.crud import add_crud_routes
from syntera.db.tables import Filter
from syntera.saved_replies import service
from syntera.saved_replies.schemas import Shortcut

saved_replies = APIRouter(prefix="/v1/saved-replies", tags=["saved replies"])


async def saved_reply_filters(
    shortcut: Annotated[
        Shortcut | None, Query(description="Only shortcuts starting with this.")
    ] = None,
) -> list[Filter]:
    """The filters of GET /v1/saved-replies."""
    return service.shortcut_filters(shortcut)


add_crud_routes(saved_replies, service.SAVED_REPLIES, filters=saved_reply_filters)

routers = [saved_replies]
