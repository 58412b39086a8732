"""The workflow graph: its nodes and edges as a visual builder saves them, their
validation, and the conditions that branch it.

A graph has one ``trigger`` node where every run starts. Edges go ``source → target``;
the edges out of a ``condition`` node carry ``condition: true|false`` and the run follows
the ones that match the condition's outcome. Graphs are acyclic (checked on save), so a
run always ends.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from syntera.crm.schemas import ContactUpdate, DealStage
from syntera.kit.schemas import IntentName, Name, Tag, Text, Url

NodeId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
FieldPath = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Operator = Literal["equals", "not_equals", "contains", "greater_than", "less_than", "in", "exists"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Comparison(Strict):
    """``field`` (a dotted path into the trigger data, e.g. ``deal.value``) ``op`` ``value``."""

    field: FieldPath
    op: Operator
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> Self:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("'in' needs a list value")
        if self.op in ("greater_than", "less_than") and not isinstance(self.value, int | float):
            raise ValueError(f"'{self.op}' needs a number value")
        return self


class AllOf(Strict):
    all: Annotated[list[Condition], Field(min_length=1, max_length=50)]


class AnyOf(Strict):
    any: Annotated[list[Condition], Field(min_length=1, max_length=50)]


Condition = Comparison | AllOf | AnyOf
AllOf.model_rebuild()
AnyOf.model_rebuild()


MISSING = object()


def _is_index(part: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²', which ``int`` refuses."""
    return part.isascii() and part.isdecimal()


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING."""
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif (
            isinstance(data, list) and part.isascii() and part.isdecimal() and int(part) < len(data)
        ):
            data = data[int(part)]
        else:
            return MISSING
    return data


def _number(value: Any) -> int | float | None:
    """``value`` as a number to compare (numeric text included), or None. Integers stay
    integers, so a 400-digit one compares exactly instead of overflowing a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and len(value) <= 100:
        try:
            return int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except (ValueError, OverflowError):
            return None
    return None


def holds(condition: Condition, data: dict[str, Any]) -> bool:
    """Whether the condition holds for the trigger data (a missing field makes every
    comparison but ``exists`` false)."""
    if isinstance(condition, AllOf):
        return all(holds(part, data) for part in condition.all)
    if isinstance(condition, AnyOf):
        return any(holds(part, data) for part in condition.any)
    found = lookup(data, condition.field)
    if condition.op == "exists":
        return (found is not MISSING and found is not None) == (condition.value is not False)
    if found is MISSING:
        return False
    expected = condition.value
    match condition.op:
        case "equals":
            return bool(found == expected)
        case "not_equals":
            return bool(found != expected)
        case "contains":
            if isinstance(found, str):
                return isinstance(expected, str) and expected.lower() in found.lower()
            return isinstance(found, list) and expected in found
        case "in":
            return bool(found in expected)
        case "greater_than" | "less_than":
            number, limit = _number(found), _number(expected)
            if number is None or limit is None:
                return False
            return number > limit if condition.op == "greater_than" else number < limit
    return False


# Nodes ------------------------------------------------------------------------------------


class TriggerNode(Strict):
    id: NodeId
    type: Literal["trigger"]
    config: dict[str, Any] = Field(default_factory=dict)


class ConditionConfig(Strict):
    when: Condition


class ConditionNode(Strict):
    id: NodeId
    type: Literal["condition"]
    config: ConditionConfig


class TagConfig(Strict):
    tag: Tag


class TagNode(Strict):
    """Adds or removes a tag on the trigger's contact."""

    id: NodeId
    type: Literal["add_tag", "remove_tag"]
    config: TagConfig


class UpdateContactConfig(Strict):
    fields: ContactUpdate


class UpdateContactNode(Strict):
    """Changes fields of the trigger's contact."""

    id: NodeId
    type: Literal["update_contact"]
    config: UpdateContactConfig


class CreateDealConfig(Strict):
    title: Name
    value: Annotated[float, Field(ge=0, le=1e12)] | None = None
    stage: DealStage = "lead"


class CreateDealNode(Strict):
    """Creates a deal for the trigger's contact (if there is one)."""

    id: NodeId
    type: Literal["create_deal"]
    config: CreateDealConfig


class DealStageConfig(Strict):
    stage: DealStage


class DealStageNode(Strict):
    """Moves the trigger's deal to a stage."""

    id: NodeId
    type: Literal["update_deal_stage"]
    config: DealStageConfig


class NotificationConfig(Strict):
    title: Name
    message: Text | None = None
    to: Literal["managers"] | UUID = Field(
        default="managers", description="A user of the company, or every owner and admin."
    )


class NotificationNode(Strict):
    id: NodeId
    type: Literal["create_notification"]
    config: NotificationConfig


class WebhookConfig(Strict):
    url: Url
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 10


class WebhookNode(Strict):
    """POSTs the trigger data as JSON, signed with the workflow's secret (HMAC-SHA256)."""

    id: NodeId
    type: Literal["send_webhook"]
    config: WebhookConfig


class DelayConfig(Strict):
    seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600)]


class DelayNode(Strict):
    """Waits (durably: a restart does not lose or shorten the wait)."""

    id: NodeId
    type: Literal["delay"]
    config: DelayConfig


class EndNode(Strict):
    id: NodeId
    type: Literal["end"]
    config: dict[str, Any] = Field(default_factory=dict)


Node = Annotated[
    TriggerNode | ConditionNode | TagNode | UpdateContactNode | CreateDealNode | DealStageNode
    | NotificationNode | WebhookNode | DelayNode | EndNode,
    Field(discriminator="type"),
]  # fmt: skip


class Edge(Strict):
    source: NodeId
    target: NodeId
    condition: bool | None = Field(
        default=None, description="On edges out of a condition node: the outcome it follows."
    )


class GraphError(ValueError):
    """The graph is not runnable; ``field`` names the node or edge."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Graph(BaseModel):
    nodes: list[Node]
    edges: list[Edge]

    def node(self, node_id: str) -> Node:
        return self._by_id[node_id]

    @property
    def _by_id(self) -> dict[str, Node]:
        return {node.id: node for node in self.nodes}

    def trigger(self) -> TriggerNode | None:
        return next((n for n in self.nodes if isinstance(n, TriggerNode)), None)

    def successors(self, node_id: str, outcome: bool | None = None) -> list[str]:
        """Targets of the node's edges (of a condition node: those of ``outcome``)."""
        return [
            edge.target
            for edge in self.edges
            if edge.source == node_id and (edge.condition is None or edge.condition == outcome)
        ]

    def check(self) -> None:
        """Raise GraphError naming the first problem."""
        if not self.nodes:
            if self.edges:
                raise GraphError("edges", "a graph without nodes has no edges")
            return
        seen: set[str] = set()
        for index, node in enumerate(self.nodes):
            if node.id in seen:
                raise GraphError(f"nodes[{index}]", f"the id {node.id!r} is used twice")
            seen.add(node.id)
        triggers = [n.id for n in self.nodes if isinstance(n, TriggerNode)]
        if len(triggers) != 1:
            raise GraphError("nodes", f"needs exactly one trigger node, has {len(triggers)}")
        by_id = self._by_id
        for index, edge in enumerate(self.edges):
            where = f"edges[{index}]"
            for end in (edge.source, edge.target):
                if end not in by_id:
                    raise GraphError(where, f"names the node {end!r}, which does not exist")
            source = by_id[edge.source]
            if isinstance(source, ConditionNode) and edge.condition is None:
                raise GraphError(where, f"leaves condition node {edge.source!r}: set condition")
            if not isinstance(source, ConditionNode) and edge.condition is not None:
                raise GraphError(where, "only edges out of a condition node have a condition")
            if isinstance(source, EndNode):
                raise GraphError(where, f"leaves end node {edge.source!r}")
            if isinstance(by_id[edge.target], TriggerNode):
                raise GraphError(where, "enters the trigger node")
        self._check_acyclic()
        reachable = self._reachable(triggers[0])
        for index, node in enumerate(self.nodes):
            if node.id not in reachable:
                raise GraphError(
                    f"nodes[{index}]", f"{node.id!r} cannot be reached from the trigger"
                )

    def _check_acyclic(self) -> None:
        incoming = {node.id: 0 for node in self.nodes}
        for edge in self.edges:
            incoming[edge.target] += 1
        ready = deque(node_id for node_id, count in incoming.items() if count == 0)
        visited = 0
        while ready:
            node_id = ready.popleft()
            visited += 1
            for edge in self.edges:
                if edge.source == node_id:
                    incoming[edge.target] -= 1
                    if incoming[edge.target] == 0:
                        ready.append(edge.target)
        if visited < len(self.nodes):
            cyclic = sorted(node_id for node_id, count in incoming.items() if count > 0)
            raise GraphError("edges", f"form a cycle through {', '.join(map(repr, cyclic))}")

    def _reachable(self, start: str) -> set[str]:
        found, queue = {start}, deque([start])
        while queue:
            node_id = queue.popleft()
            for edge in self.edges:
                if edge.source == node_id and edge.target not in found:
                    found.add(edge.target)
                    queue.append(edge.target)
        return found


class TriggerConfig(Strict):
    """Which events start the workflow (all given filters must hold)."""

    from_stage: DealStage | None = Field(default=None, description="deal_stage_changed only.")
    to_stage: DealStage | None = Field(default=None, description="deal_stage_changed only.")
    agent_id: UUID | None = Field(default=None, description="Conversation events of this agent.")
    when: Condition | None = Field(default=None, description="A condition on the event data.")
    intent: IntentName | None = Field(
        default=None, description="message_intent only: the intent that starts it."
    )
    min_confidence: float | None = Field(
        default=None, ge=0, le=1,
        description="message_intent only: the classification's confidence, at least.",
    )  # fmt: skip

    def matches(self, data: dict[str, Any]) -> bool:
        if self.from_stage is not None and data.get("from_stage") != self.from_stage:
            return False
        if self.to_stage is not None and data.get("to_stage") != self.to_stage:
            return False
        if self.agent_id is not None and data.get("agent_id") != str(self.agent_id):
            return False
        found = data.get("intent")
        intent: dict[str, Any] = found if isinstance(found, dict) else {}
        if self.intent is not None and intent.get("name") != self.intent:
            return False
        if self.min_confidence is not None and not (
            isinstance(intent.get("confidence"), int | float)
            and intent["confidence"] >= self.min_confidence
        ):
            return False
        return self.when is None or holds(self.when, data)
