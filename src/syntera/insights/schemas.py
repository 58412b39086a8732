"""The agents' reports as the API returns them."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from pydantic import Field

from syntera.kit.schemas import Output


class Percentiles(Output):
    p50: float | None = Field(description="The median, in milliseconds (nearest rank).")
    p90: float | None = Field(description="The 90th percentile, in milliseconds (nearest rank).")


class Satisfaction(Output):
    count: int = Field(description="Conversations the visitor rated.")
    average: float | None = Field(description="Their mean rating, 1 to 5.")


class AgentDay(Output):
    day: date
    agent_id: UUID
    agent_name: str | None
    conversations: int
    first_response_ms: Percentiles
    resolution_ms: Percentiles
    handoff_rate: float | None
    resolved_by_agent_rate: float | None
    tokens_per_conversation: float | None
    cost_per_conversation: float | None
    sentiment_start: float | None
    sentiment_end: float | None
    satisfaction: Satisfaction


class AgentReport(Output):
    from_day: date = Field(description="The first day reported (UTC).")
    to_day: date = Field(description="The last day reported (UTC), included.")
    rows: list[AgentDay] = Field(description="One per day (UTC) and agent, by day then agent.")
    definitions: dict[str, str] = Field(description="What each figure of a row means.")
