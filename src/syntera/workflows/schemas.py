"""Workflows and their executions as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from syntera.api.schemas import Input, JsonObject, Name, Output, Text

TriggerType = Literal[
    "conversation_started",
    "conversation_ended",
    "message_received",
    "purchase_intent",
    "contact_created",
    "contact_updated",
    "deal_created",
    "deal_stage_changed",
    "webhook",
]
Nodes = Annotated[list[JsonObject], Field(max_length=200, description="The graph's nodes.")]
Edges = Annotated[list[JsonObject], Field(max_length=400, description="The graph's edges.")]


class WorkflowCreate(Input):
    name: Name
    description: Text | None = None
    enabled: bool = True
    trigger_type: TriggerType
    trigger_config: JsonObject = Field(default_factory=dict)
    nodes: Nodes = Field(default_factory=list)
    edges: Edges = Field(default_factory=list)


class WorkflowUpdate(Input):
    name: Name | None = None
    description: Text | None = None
    enabled: bool | None = None
    trigger_type: TriggerType | None = None
    trigger_config: JsonObject | None = None
    nodes: Nodes | None = None
    edges: Edges | None = None


class Workflow(Output):
    id: UUID
    company_id: UUID
    name: str
    description: str | None
    enabled: bool
    trigger_type: TriggerType
    trigger_config: dict[str, Any]
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime


class WorkflowExecution(Output):
    id: UUID
    company_id: UUID
    workflow_id: UUID
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    trigger_type: str
    trigger_data: dict[str, Any]
    steps: list[Any]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    created_at: datetime
