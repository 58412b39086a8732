"""Agent configurations and their widget keys."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from syntera.agents.schemas import Agent, AgentCreate, AgentUpdate, PublicKey
from syntera.cache import CACHE_VERSION, Cache
from syntera.db.postgres import TenantConnection
from syntera.db.redis import RedisClient, global_key, tenant_key
from syntera.db.tables import Row
from syntera.errors import not_found
from syntera.kit.resources import Resource, access_row
from syntera.unit_of_work import TenantTransaction

PUBLIC_KEY_PREFIX = "pub_key_"

AGENTS = Resource.of(
    "agent_configs",
    Agent,
    "agent",
    AgentCreate,
    AgentUpdate,
    json_columns=frozenset({"voice_settings"}),
)


# The agent of a public key: syntera.widget_keys names one agent per digest (its primary
# key, migration 019); the agent is then read by its full key.
AGENT_BY_PUBLIC_KEY = """
SELECT a.id, a.company_id, a.enabled
FROM syntera.widget_keys k
JOIN public.agent_configs a ON a.company_id = k.company_id AND a.id = k.agent_id
WHERE k.digest = %(digest)s
"""

# Keys are made by the database, which stores their digest (a system column).
ISSUE_PUBLIC_KEY = "SELECT public.issue_widget_key(%(company_id)s, %(id)s) AS key"


def public_key_digest(key: str) -> str:
    """What is stored of a widget key: its SHA-256, so a leaked table opens no widget."""
    return hashlib.sha256(key.encode()).hexdigest()


# Cache keys: an agent under its company; a public key's agent under the key's digest
# (the widget does not know the company before it has the agent).


def _agent_entry(company_id: UUID, agent_id: UUID) -> str:
    return tenant_key(company_id, CACHE_VERSION, "agent", str(agent_id))


def _agent_generation(company_id: UUID, agent_id: UUID) -> str:
    return tenant_key(company_id, "generation", "agent", str(agent_id))


def _public_key_entry(digest: str) -> str:
    return global_key("agent-by-key", digest, CACHE_VERSION)


def _public_key_generation(digest: str) -> str:
    return global_key("agent-by-key", digest, "generation")


def public_key_cache_keys(digest: str) -> tuple[str, str]:
    """The Redis keys that cache a widget key's agent (for a purge to remove)."""
    return _public_key_entry(digest), _public_key_generation(digest)


async def forget_public_keys(redis: RedisClient, digests: list[str]) -> int:
    """A deleted company's purge step: the cached agents of its widget keys, which live
    under the keys' digests, not the company's tag (one call per digest); how many."""
    removed = 0
    for digest in digests:
        removed += int(await redis.unlink(*public_key_cache_keys(digest)))
    return removed


def invalidate_public_key(tx: TenantTransaction, digest: str) -> None:
    """After a widget key's agent went: the key's cached agent is stale at the commit."""
    tx.invalidate_after_commit(_public_key_generation(digest))


def invalidate_agent(tx: TenantTransaction, row: Row) -> None:
    """After an agent's row changed or went: its cached values are stale."""
    keys = [_agent_generation(tx.company_id, row["id"])]
    if row.get("public_api_key"):
        keys.append(_public_key_generation(row["public_api_key"]))
    tx.invalidate_after_commit(*keys)


async def read_agent(tx: TenantTransaction, agent_id: UUID) -> Agent:
    """One agent of the caller's company, from the cache when it is current."""

    async def load() -> Row | None:
        return await AGENTS.table.fetch(tx.conn, tx.company_id, agent_id)

    if tx.cache is None:
        row = await load()
    else:
        row = await tx.cache.read(
            "agent",
            _agent_entry(tx.company_id, agent_id),
            _agent_generation(tx.company_id, agent_id),
            tx.cache.ttl.agent_s,
            load,
        )
    if row is None:
        raise not_found("Agent")
    return Agent.model_validate(row)


async def agent_by_public_key(
    conn: TenantConnection, cache: Cache | None, digest: str
) -> dict[str, Any] | None:
    """The agent (id, company_id, enabled) whose public key has this digest, or None."""

    async def load() -> dict[str, Any] | None:
        return await (await conn.execute(AGENT_BY_PUBLIC_KEY, {"digest": digest})).fetchone()

    if cache is None:
        found = await load()
    else:
        found = await cache.read(
            "agent_by_key",
            _public_key_entry(digest),
            _public_key_generation(digest),
            cache.ttl.agent_s,
            load,
        )
    if found is None:
        return None
    return {"id": UUID(str(found["id"])), "company_id": UUID(str(found["company_id"])),
            "enabled": bool(found["enabled"])}  # fmt: skip


async def rotate_public_key(tx: TenantTransaction, agent_id: UUID) -> PublicKey:
    """Create or replace the agent's widget key; the old key stops working at once."""
    before = await access_row(tx, AGENTS, agent_id)
    params = {"company_id": tx.company_id, "id": agent_id}
    row = await (await tx.conn.execute(ISSUE_PUBLIC_KEY, params)).fetchone()
    if row is None or row["key"] is None:
        raise not_found(AGENTS.label)
    key = str(row["key"])
    invalidate_agent(tx, before)
    invalidate_agent(tx, {**before, "public_api_key": public_key_digest(key)})
    return PublicKey(agent_id=agent_id, public_key=key)
