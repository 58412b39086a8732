"""Where company data lives outside PostgreSQL, and how it leaves: the one list.

DESIGN.md's rule, as code: every store that holds company data registers here how a
deleted company's data goes (``company``), how an erased contact's goes (``contact``) and
what a contact's export holds of it (``export``). Each step is the owning domain's own
function (the conversations domain knows its collections and cache keys, the knowledge
base its files and vectors, the agents their widget keys' cache); the purge worker and
the export walk this list and know no other domain's layout. A feature that stores
company data somewhere new adds its steps here.

Steps are idempotent (deleting what is already gone removes nothing) and their names are
recorded with their counts in ``syntera.purges.steps``, so a purge that is retried starts
after the last step it finished.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from uuid import UUID

from syntera.agents.service import forget_public_keys
from syntera.conversations import erasure as conversations
from syntera.conversations.store import ConversationStore
from syntera.db.redis import RedisClient, delete_tenant_keys
from syntera.kb.knowledge_base import KnowledgeBase

# A deleted company's step: (company, its widget keys' digests) -> what it removed.
CompanyStep = Callable[[UUID, list[str]], Awaitable[dict[str, int]]]
# An erased contact's step: (company, contact) -> what it removed.
ContactStep = Callable[[UUID, UUID], Awaitable[dict[str, int]]]
# A part of a contact's export: (company, contact) -> the elements of a JSON array.
ExportPart = Callable[[UUID, UUID], AsyncIterator[bytes]]

# The names of the steps, in the order they run (a purge's progress reads them).
COMPANY_STEPS = ("mongodb", "files", "vectors", "redis")
CONTACT_STEPS = ("conversations",)


@dataclass(frozen=True)
class StoredElsewhere:
    """Every store outside PostgreSQL that holds company data: its purge steps, in
    order, and its parts of a contact's export."""

    company: dict[str, CompanyStep]
    contact: dict[str, ContactStep]
    export: dict[str, ExportPart]


def stored_elsewhere(
    store: ConversationStore, kb: KnowledgeBase, redis: RedisClient
) -> StoredElsewhere:
    """The steps of this deployment's stores."""

    async def files(company_id: UUID, _: list[str]) -> dict[str, int]:
        return {"files": await kb.storage.delete_company(company_id)}

    async def vectors(company_id: UUID, _: list[str]) -> dict[str, int]:
        return {"vectors": await kb.vectors.delete_company(company_id)}

    async def redis_keys(company_id: UUID, key_digests: list[str]) -> dict[str, int]:
        """Every key under the company's tag (caches, sessions, limits, event streams),
        and the widget keys' cached agents, which live under the keys' digests."""
        removed = await delete_tenant_keys(redis, company_id)
        return {"keys": removed + await forget_public_keys(redis, key_digests)}

    async def mongodb(company_id: UUID, _: list[str]) -> dict[str, int]:
        return await conversations.purge_company(store, company_id)

    company: dict[str, CompanyStep] = dict(
        zip(COMPANY_STEPS, (mongodb, files, vectors, redis_keys), strict=True)
    )
    contact: dict[str, ContactStep] = dict(
        zip(CONTACT_STEPS, (partial(conversations.erase_contact, store, redis),), strict=True)
    )
    return StoredElsewhere(
        company, contact, {"conversations": partial(conversations.export_contact, store)}
    )
