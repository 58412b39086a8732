"""Notifications. A user reaches only their own (the database's policies say so too); the
service key reaches every notification of the company it names."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Query
from psycopg import sql

from syntera.api.crud import Resource
from syntera.api.deps import Tenant
from syntera.api.errors import field_error, not_found
from syntera.db.tables import Filter, TenantTable
from syntera.notifications.schemas import (
    Notification,
    NotificationCreate,
    NotificationUpdate,
    UnreadCount,
)

NOTIFICATIONS = Resource(
    TenantTable(
        "notifications", tuple(Notification.model_fields), json_columns=frozenset({"data"})
    ),
    Notification,
    "notification",
    NotificationCreate,
    NotificationUpdate,
)

IS_MEMBER = """
SELECT 1 FROM public.users WHERE id = %(user_id)s AND company_id = %(company_id)s
"""

UNREAD_COUNT = """
SELECT count(*) AS unread FROM public.notifications
 WHERE company_id = %(company_id)s AND user_id = %(user_id)s AND read_at IS NULL
"""

MARK_ALL_READ = """
UPDATE public.notifications SET read_at = now()
 WHERE company_id = %(company_id)s AND user_id = %(user_id)s AND read_at IS NULL
"""


async def notification_filters(
    unread: Annotated[bool | None, Query(description="Only unread (true) or read (false).")] = None,
) -> list[Filter]:
    """The filters of GET /v1/notifications. Which user's: the database's policy decides
    (a user sees only their own; the service key the whole company's)."""
    if unread is None:
        return []
    return [Filter(sql.SQL("read_at IS NULL" if unread else "read_at IS NOT NULL"))]


async def check_recipient(tenant: Tenant, values: dict[str, Any]) -> None:
    """The recipient must be a member of the company (notifications.user_id is not a
    composite reference, so the service key is checked here)."""
    params = {"user_id": values["user_id"], "company_id": tenant.company_id}
    if await (await tenant.conn.execute(IS_MEMBER, params)).fetchone() is None:
        raise field_error("user_id", "is not a member of this company")


MARK = """
UPDATE public.notifications
   SET read_at = CASE WHEN %(read)s THEN coalesce(read_at, now()) END
 WHERE company_id = %(company_id)s AND id = %(id)s
RETURNING {columns}
"""


async def mark(tenant: Tenant, notification_id: UUID, read: bool) -> dict[str, Any]:
    """Mark one notification read or unread (keeping the first read time)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, NOTIFICATIONS.table.columns))
    query = sql.SQL(MARK).format(columns=columns)
    params = {"read": read, "company_id": tenant.company_id, "id": notification_id}
    row = await (await tenant.conn.execute(query, params)).fetchone()
    if row is None:
        raise not_found("Notification")
    return row


async def create(tenant: Tenant, body: NotificationCreate) -> dict[str, Any]:
    """A notification to one member of the company (the service's job)."""
    values = body.changes()
    await check_recipient(tenant, values)
    return await NOTIFICATIONS.table.insert(tenant.conn, tenant.company_id, values)


async def unread_count(tenant: Tenant, user_id: UUID) -> UnreadCount:
    params = {"company_id": tenant.company_id, "user_id": user_id}
    row = await (await tenant.conn.execute(UNREAD_COUNT, params)).fetchone()
    return UnreadCount(unread=row["unread"] if row else 0)


async def mark_all_read(tenant: Tenant, user_id: UUID) -> int:
    params = {"company_id": tenant.company_id, "user_id": user_id}
    return (await tenant.conn.execute(MARK_ALL_READ, params)).rowcount
