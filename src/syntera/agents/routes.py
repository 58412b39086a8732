"""/v1/agents."""

from __future__ import annotations

from fastapi import APIRouter

from syntera.agents import service
from syntera.agents.schemas import Agent, PublicKey
from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Member

agents = APIRouter(prefix="/v1/agents", tags=["agents"])


@agents.get("/{row_id}", response_model=Agent, operation_id="read_agent")
async def read_agent(tx: Member, row_id: RowId) -> Agent:
    """One agent of your company (served from the cache while it is current)."""
    return await service.read_agent(tx, row_id)


add_crud_routes(
    agents,
    service.AGENTS,
    routes=("create", "update", "delete", "list"),
    on_change=service.invalidate_agent,
)


@agents.post("/{row_id}/public-key", status_code=201, response_model=PublicKey)
async def create_public_key(tx: Member, row_id: RowId) -> PublicKey:
    """Create or rotate the agent's widget key (``pub_key_…``); it is returned only now."""
    return await service.rotate_public_key(tx, row_id)


routers = [agents]
