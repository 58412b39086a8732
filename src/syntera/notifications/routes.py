"""/v1/notifications."""

from __future__ import annotations

from fastapi import APIRouter

from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Caller, Service
from syntera.notifications import service
from syntera.notifications.schemas import (
    Notification,
    NotificationCreate,
    NotificationUpdate,
    UnreadCount,
)

notifications = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@notifications.get("/unread-count", response_model=UnreadCount)
async def count_unread(tenant: Caller) -> UnreadCount:
    """How many of your notifications are unread."""
    assert tenant.user_id is not None  # Caller is a signed-in user
    return await service.unread_count(tenant, tenant.user_id)


@notifications.post("/read-all", status_code=204)
async def mark_all_read(tenant: Caller) -> None:
    """Mark all your notifications read."""
    assert tenant.user_id is not None
    await service.mark_all_read(tenant, tenant.user_id)


@notifications.post("", status_code=201, response_model=Notification)
async def create_notification(tenant: Service, body: NotificationCreate) -> Notification:
    """Notify a member of the company named in X-Company-Id (service key only)."""
    return Notification.model_validate(await service.create(tenant, body))


@notifications.patch("/{row_id}", response_model=Notification)
async def update_notification(
    tenant: Caller, row_id: RowId, body: NotificationUpdate
) -> Notification:
    """Mark one of your notifications read or unread."""
    return Notification.model_validate(await service.mark(tenant, row_id, body.read))


add_crud_routes(
    notifications,
    service.NOTIFICATIONS,
    filters=service.notification_filters,
    routes=("read", "delete", "list"),
)

routers = [notifications]
