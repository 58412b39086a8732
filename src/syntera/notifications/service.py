"""Notifications. A user reaches only their own (the database's policies say so too); the
service key reaches every notification of the company it names."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from syntera.db.tables import Filter
from syntera.errors import field_error, not_found
from syntera.kit.resources import Resource
from syntera.notifications import schemas
from syntera.unit_of_work import TenantTransaction

NOTIFICATIONS = Resource.of(
    "notifications",
    schemas.Notification,
    "notification",
    schemas.NotificationCreate,
    schemas.NotificationUpdate,
    json_columns=frozenset({"data"}),
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


def notification_filters(unread: bool | None) -> list[Filter]:
    """The filters of GET /v1/notifications. Which user's: the database's policy decides
    (a user sees only their own; the service key the whole company's)."""
    if unread is None:
        return []
    return [Filter(sql.SQL("read_at IS NULL" if unread else "read_at IS NOT NULL"))]


async def check_recipient(tx: TenantTransaction, values: dict[str, Any]) -> None:
    """The recipient must be a member of the company (notifications.user_id is not a
    composite reference, so the service key is checked here)."""
    params = {"user_id": values["user_id"], "company_id": tx.company_id}
    if await (await tx.conn.execute(IS_MEMBER, params)).fetchone() is None:
        raise field_error("user_id", "is not a member of this company")


MARK = """
UPDATE public.notifications
   SET read_at = CASE WHEN %(read)s THEN coalesce(read_at, now()) END
 WHERE company_id = %(company_id)s AND id = %(id)s
RETURNING {columns}
"""


async def mark(tx: TenantTransaction, notification_id: UUID, read: bool) -> dict[str, Any]:
    """Mark one notification read or unread (keeping the first read time)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, NOTIFICATIONS.table.columns))
    query = sql.SQL(MARK).format(columns=columns)
    params = {"read": read, "company_id": tx.company_id, "id": notification_id}
    row = await (await tx.conn.execute(query, params)).fetchone()
    if row is None:
        raise not_found("schemas.Notification")
    return row


async def create(tx: TenantTransaction, body: schemas.NotificationCreate) -> dict[str, Any]:
    """A notification to one member of the company (the service's job)."""
    values = body.changes()
    await check_recipient(tx, values)
    return await NOTIFICATIONS.table.insert(tx.conn, tx.company_id, values)


async def unread_count(tx: TenantTransaction, user_id: UUID) -> schemas.UnreadCount:
    params = {"company_id": tx.company_id, "user_id": user_id}
    row = await (await tx.conn.execute(UNREAD_COUNT, params)).fetchone()
    return schemas.UnreadCount(unread=row["unread"] if row else 0)


async def mark_all_read(tx: TenantTransaction, user_id: UUID) -> int:
    params = {"company_id": tx.company_id, "user_id": user_id}
    return (await tx.conn.execute(MARK_ALL_READ, params)).rowcount


# A notification from the system (a workflow) to members chosen by role or by id.
NOTIFY_MANAGERS = """
INSERT INTO public.notifications (company_id, user_id, type, title, body, data)
SELECT company_id, id, %(type)s, %(title)s, %(body)s, %(data)s
  FROM public.users
 WHERE company_id = %(company_id)s AND role IN ('owner', 'admin')
RETURNING user_id
"""

NOTIFY_EVERY_MEMBER = """
INSERT INTO public.notifications (company_id, user_id, type, title, body, data)
SELECT company_id, id, %(type)s, %(title)s, %(body)s, %(data)s
  FROM public.users
 WHERE company_id = %(company_id)s
RETURNING user_id
"""

NOTIFY_MEMBER = """
INSERT INTO public.notifications (company_id, user_id, type, title, body, data)
SELECT company_id, id, %(type)s, %(title)s, %(body)s, %(data)s
  FROM public.users
 WHERE company_id = %(company_id)s AND id = %(user_id)s
RETURNING user_id
"""


async def notify_members(
    tx: TenantTransaction,
    to: UUID | Literal["managers", "members"],
    *,
    kind: str,
    title: str,
    body: str | None,
    data: dict[str, Any],
) -> list[UUID]:
    """Notify every owner and admin (``"managers"``), every member (``"members"``) or
    one member of the company; the users notified (none when ``to`` is not a member)."""
    params = {
        "company_id": tx.company_id,
        "type": kind,
        "title": title,
        "body": body,
        "data": Jsonb(data),
    }
    if to == "managers":
        cursor = await tx.conn.execute(NOTIFY_MANAGERS, params)
    elif to == "members":
        cursor = await tx.conn.execute(NOTIFY_EVERY_MEMBER, params)
    else:
        cursor = await tx.conn.execute(NOTIFY_MEMBER, {**params, "user_id": to})
    return [row["user_id"] for row in await cursor.fetchall()]
