"""Who on the team has a conversation: the checks of an assignee, and where a
conversation handed to people goes.

A conversation handed to people by the system (the visitor asked, the model failed, the
budget is spent) goes, when the company turned ``auto_assign_handoffs`` on, to the online
member (an event stream open: ``syntera.events.presence``) with the fewest active
conversations; otherwise, or with nobody online, it waits unassigned in "needs a person"
and every member is notified.
"""

from __future__ import annotations

from uuid import UUID

from syntera.conversations.store import ConversationStore
from syntera.db.mongo import Document
from syntera.errors import field_error
from syntera.events.presence import online_members
from syntera.notifications.service import notify_members
from syntera.unit_of_work import TenantTransaction

MEMBERS = """
SELECT id, name, email FROM public.users WHERE company_id = %(company_id)s ORDER BY created_at, id
"""

IS_MEMBER = "SELECT 1 FROM public.users WHERE company_id = %(company_id)s AND id = %(user_id)s"

NOTIFY_ASSIGNMENT = (
    "SELECT private.notify_assignment(%(company_id)s, %(assignee)s, %(conversation_id)s)"
)

AUTO_ASSIGN = "SELECT auto_assign_handoffs FROM public.companies WHERE id = %(company_id)s"


async def members(tx: TenantTransaction) -> list[tuple[UUID, str, str]]:
    """The company's members (id, display name, email), oldest first."""
    cursor = await tx.conn.execute(MEMBERS, {"company_id": tx.company_id})
    return [(row["id"], row["name"], row["email"]) for row in await cursor.fetchall()]


async def check_assignee(tx: TenantTransaction, user_id: UUID) -> None:
    """422 unless ``user_id`` is a member of the company now (not of another company,
    not removed)."""
    params = {"company_id": tx.company_id, "user_id": user_id}
    if await (await tx.conn.execute(IS_MEMBER, params)).fetchone() is None:
        raise field_error("assignee_id", "is not a member of this company")


async def notify_assignee(tx: TenantTransaction, conversation: Document, assignee: UUID) -> None:
    """Tell the member a conversation is theirs (not when they took it themselves). A
    member writes no notification directly: the database's function writes this one
    kind, to a member of the caller's company only."""
    if assignee == tx.user_id:
        return
    params = {
        "company_id": tx.company_id,
        "assignee": assignee,
        "conversation_id": str(conversation["_id"]),
    }
    await tx.conn.execute(NOTIFY_ASSIGNMENT, params)


async def route_to_people(
    tx: TenantTransaction, store: ConversationStore, conversation: Document, reason: str
) -> Document | None:
    """A conversation the system just handed to people: assigned to the online member
    with the fewest active conversations (the conversation after), or left in the queue
    with every member notified (None)."""
    if conversation.get("assignee_id") is None:
        chosen = await _least_busy_online(tx, store)
        if chosen is not None:
            assigned = await store.assign_if_unassigned(tx.company_id, conversation["_id"], chosen)
            if assigned is not None:
                await notify_assignee(tx, assigned, chosen)
                return assigned
    await notify_members(
        tx, "members", kind="conversation.handoff",
        title="A conversation needs a person",
        body=f"The agent handed a conversation to the team: {reason}.",
        data={"conversation_id": str(conversation["_id"]), "reason": reason},
    )  # fmt: skip
    return None


async def _least_busy_online(tx: TenantTransaction, store: ConversationStore) -> UUID | None:
    """The online member with the fewest active conversations (the longest-standing
    first among equals), if the company assigns hand-offs and anyone is online."""
    row = await (await tx.conn.execute(AUTO_ASSIGN, {"company_id": tx.company_id})).fetchone()
    if row is None or not row["auto_assign_handoffs"] or tx.cache is None:
        return None
    team = [user_id for user_id, _, _ in await members(tx)]
    online = await online_members(tx.cache.redis, tx.company_id, team)
    candidates = [user_id for user_id in team if user_id in online]
    if not candidates:
        return None
    load = await store.open_conversations_of(tx.company_id, candidates)
    return min(candidates, key=lambda user_id: load[user_id])
