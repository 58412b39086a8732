"""Agent configurations and their widget keys."""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

from syntera.agents.schemas import Agent, AgentCreate, AgentUpdate, PublicKey
from syntera.api.crud import Resource, update_row
from syntera.api.deps import Tenant
from syntera.db.tables import TenantTable

PUBLIC_KEY_PREFIX = "pub_key_"

AGENTS = Resource(
    TenantTable(
        "agent_configs",
        tuple(Agent.model_fields),
        json_columns=frozenset({"voice_settings"}),
    ),
    Agent,
    "agent",
    AgentCreate,
    AgentUpdate,
)


def public_key_digest(key: str) -> str:
    """What is stored of a widget key: its SHA-256, so a leaked table opens no widget."""
    return hashlib.sha256(key.encode()).hexdigest()


async def rotate_public_key(tenant: Tenant, agent_id: UUID) -> PublicKey:
    """Create or replace the agent's widget key; the old key stops working at once."""
    key = PUBLIC_KEY_PREFIX + secrets.token_urlsafe(24)
    await update_row(tenant, AGENTS, agent_id, {"public_api_key": public_key_digest(key)})
    return PublicKey(agent_id=agent_id, public_key=key)
