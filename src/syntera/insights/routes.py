"""/v1/reports/agents: the reports on the agents' work."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from syntera.api.deps import Member
from syntera.conversations.routes import Store
from syntera.insights import reports
from syntera.insights.schemas import AgentReport
from syntera.insights.store import InsightStore

router = APIRouter(prefix="/v1/reports", tags=["reports"])

# Days every store can compare against with a period's margin on either side.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9999, 11, 30)


@router.get("/agents", response_model=AgentReport)
async def agents_report(
    tx: Member,
    store: Store,
    from_day: Annotated[
        date | None,
        Query(
            alias="from", description="First day (YYYY-MM-DD, UTC); default: 29 days before `to`."
        ),
    ] = None,
    to_day: Annotated[
        date | None,
        Query(
            alias="to",
            ge=FIRST_DAY,
            le=LAST_DAY,
            description="Last day, included; default: today (UTC).",
        ),
    ] = None,
    agent_id: Annotated[UUID | None, Query(description="Of this agent only.")] = None,
) -> AgentReport:
    """Per day and per agent: conversations, first response and resolution times (median
    and p90), hand-off rate, the share resolved by the agent alone, tokens and cost per
    conversation, sentiment at the start and the end, and the visitors' ratings. Each
    figure's definition is in `definitions` (and docs/reports.md)."""
    return await reports.agent_report(tx, InsightStore(store), from_day, to_day, agent_id)


routers = [router]
