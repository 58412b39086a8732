"""Data whose company no longer exists: MongoDB documents, files, vectors, Redis keys.

Left by company deletions made before purges existed, or by a purge that failed for
good. ``find_orphans`` lists them per store and company; ``delete_orphans`` removes them
with the same steps a purge takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from uuid import UUID

from syntera.db.mongo import MongoDatabase
from syntera.db.redis import RedisClient, delete_tenant_keys
from syntera.kb.knowledge_base import KnowledgeBase

# The company of a tenant key: t:{<uuid>}:…
_TENANT_KEY = re.compile(rb"^t:\{([0-9a-f-]{36})\}:")


@dataclass
class Orphans:
    """Per store, the companies that no longer exist and how much each left."""

    mongodb: dict[UUID, int] = field(default_factory=dict)
    files: dict[UUID, int] = field(default_factory=dict)
    vectors: dict[UUID, int] = field(default_factory=dict)
    redis: dict[UUID, int] = field(default_factory=dict)

    def stores(self) -> dict[str, dict[UUID, int]]:
        return {"mongodb": self.mongodb, "files": self.files, "vectors": self.vectors,
                "redis": self.redis}  # fmt: skip

    @property
    def companies(self) -> set[UUID]:
        return {company for held in self.stores().values() for company in held}


async def find_orphans(
    existing: set[UUID], database: MongoDatabase, kb: KnowledgeBase, redis: RedisClient
) -> Orphans:
    """What the stores hold for companies not in ``existing``."""
    found = Orphans()
    for name in await _collections(database):
        collection = database[name]
        for value in await collection.distinct("company_id"):
            company = _uuid(value)
            if company is not None and company not in existing:
                count = await collection.count_documents({"company_id": value})
                found.mongodb[company] = found.mongodb.get(company, 0) + count
    found.files = {c: n for c, n in (await kb.storage.companies()).items() if c not in existing}
    found.vectors = {c: n for c, n in (await kb.vectors.companies()).items() if c not in existing}
    async for key in redis.scan_iter(match="t:{*", count=1000):
        match = _TENANT_KEY.match(key if isinstance(key, bytes) else key.encode())
        company = _uuid(match[1].decode()) if match else None
        if company is not None and company not in existing:
            found.redis[company] = found.redis.get(company, 0) + 1
    return found


async def delete_orphans(
    found: Orphans, database: MongoDatabase, kb: KnowledgeBase, redis: RedisClient
) -> None:
    """Remove what ``find_orphans`` found."""
    for company in found.mongodb:
        for name in await _collections(database):
            await database[name].delete_many({"company_id": str(company)})
    for company in found.files:
        await kb.storage.delete_company(company)
    for company in found.vectors:
        await kb.vectors.delete_company(company)
    for company in found.redis:
        await delete_tenant_keys(redis, company)


async def _collections(database: MongoDatabase) -> list[str]:
    """The data collections (not the server's own ``system.*``)."""
    return [n for n in await database.list_collection_names() if not n.startswith("system.")]


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None
