"""A member who leaves the company leaves their conversations: the active ones assigned
to them are unassigned (those in people's hands wait in "needs a person" again), each
with ``conversation.updated`` on the team's stream."""

from __future__ import annotations

from uuid import UUID

from syntera.conversations.inbox import publish_described
from syntera.conversations.service import HEADER, invalidate_cached
from syntera.conversations.store import ConversationStore
from syntera.unit_of_work import TenantTransaction


async def release_member(tx: TenantTransaction, store: ConversationStore, user_id: UUID) -> int:
    """Unassign the active conversations of a member who left; how many."""
    released = await store.release(tx.company_id, user_id)
    for conversation in released:
        invalidate_cached(tx, conversation["_id"], HEADER)
        await publish_described(tx, conversation)
    return len(released)
