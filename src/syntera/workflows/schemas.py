"""Workflows and their executions as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from syntera.kit.schemas import Input, JsonObject, Name, Output, Text
from syntera.workflows.graph import Edge, Node, TriggerConfig

TriggerType = Literal[
    "conversation_started",
    "conversation_ended",
    "message_received",
    "purchase_intent",
    "message_intent",
    "contact_created",
    "contact_updated",
    "deal_created",
    "deal_stage_changed",
    "webhook",
]
Nodes = Annotated[
    list[Node],
    Field(
        max_length=200,
        description="The graph's nodes, `{id, type, config}`: one `trigger`; `condition` "
        "(`config.when`: a comparison `{field, op, value}` on the trigger data, or "
        "`{all: [...]}` / `{any: [...]}`); actions `add_tag`, `remove_tag`, "
        "`update_contact`, `create_deal`, `update_deal_stage`, `create_notification`, "
        "`send_webhook`; `delay`; `end`.",
    ),
]
Edges = Annotated[
    list[Edge],
    Field(
        max_length=400,
        description="`{source, target}`; out of a condition node also `condition: "
        "true|false`. No cycles.",
    ),
]


class WorkflowCreate(Input):
    name: Name
    description: Text | None = None
    enabled: bool = True
    trigger_type: TriggerType
    trigger_config: TriggerConfig = Field(default_factory=TriggerConfig)
    nodes: Nodes = Field(default_factory=list)
    edges: Edges = Field(default_factory=list)


class WorkflowUpdate(Input):
    name: Name | None = None
    description: Text | None = None
    enabled: bool | None = None
    trigger_type: TriggerType | None = None
    trigger_config: TriggerConfig | None = None
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
    status: Literal["pending", "running", "success", "failed", "cancelled"]
    triggered_by: Literal["event", "webhook", "test"]
    event_id: int | None
    depth: int
    trigger_type: str
    trigger_data: dict[str, Any]
    steps: list[Any] = Field(description="Per node: `{node_id, type, status, result, at, ms}`.")
    error: str | None
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    execution_time_ms: int | None
    created_at: datetime


class WorkflowTest(Input):
    trigger_data: JsonObject = Field(
        default_factory=dict, description="Sample data, as the trigger would give it."
    )


class TestStep(Output):
    node_id: str
    type: str
    outcome: bool | None = None
    would: str | None = None


class WorkflowTestResult(Output):
    matches_trigger: bool = Field(description="Whether trigger_config lets this data start it.")
    path: list[TestStep]


class WorkflowSecret(Output):
    secret: str = Field(
        description="Send it as `X-Webhook-Secret` to POST /v1/hooks/{workflow_id}; outgoing "
        "webhooks are signed with it (`X-Syntera-Signature: sha256=HMAC(secret, "
        "timestamp + '.' + body)`)."
    )


class HookAccepted(Output):
    event_id: int
