"""/v1/notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Service, SignedIn
from syntera.db.tables import Filter
from syntera.notifications import service
from syntera.notifications.schemas import (
    Notification,
    NotificationCreate,
    NotificationUpdate,
    UnreadCount,
)

notifications = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@notifications.get("/unread-count", response_model=UnreadCount)
async def count_unread(tx: SignedIn) -> UnreadCount:
    """How many of your notifications are unread."""
    assert tx.user_id is not None  # SignedIn is a signed-in user
    return await service.unread_count(tx, tx.user_id)


@notifications.post("/read-all", status_code=204)
async def mark_all_read(tx: SignedIn) -> None:
    """Mark all your notifications read."""
    assert tx.user_id is not None
    await service.mark_all_read(tx, tx.user_id)


@notifications.post("", status_code=201, response_model=Notification)
async def create_notification(tx: Service, body: NotificationCreate) -> Notification:
    """Notify a member of the company named in X-Company-Id (service key only)."""
    return Notification.model_validate(await service.create(tx, body))


@notifications.patch("/{row_id}", response_model=Notification)
async def update_notification(
    tx: SignedIn, row_id: RowId, body: NotificationUpdate
) -> Notification:
    """Mark one of your notifications read or unread."""
    return Notification.model_validate(await service.mark(tx, row_id, body.read))


async def notification_filters(
    unread: Annotated[bool | None, Query(description="Only unread (true) or read (false).")] = None,
) -> list[Filter]:
    """The filters of GET /v1/notifications. Which user's: the database's policy decides
    (a user sees only their own; the service key the whole company's)."""
    return service.notification_filters(unread)


add_crud_routes(
    notifications,
    service.NOTIFICATIONS,
    filters=notification_filters,
    routes=("read", "delete", "list"),
)

routers = [notifications]
