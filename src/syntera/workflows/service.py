"""Workflows (owners and admins write, members read), their executions (read only: the
system writes the audit trail), dry runs, secrets and inbound webhooks."""

from __future__ import annotations

import hmac
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from syntera.db.postgres import TenantConnection
from syntera.db.storable import storable
from syntera.db.tables import Filter
from syntera.errors import Conflict, Unauthorized, field_error, not_found
from syntera.kit.pagination import Page, PageRequest
from syntera.kit.resources import Resource, access_row, list_rows, update_row
from syntera.unit_of_work import TenantTransaction
from syntera.workflows import schemas
from syntera.workflows.graph import (
    ConditionNode,
    DelayNode,
    EndNode,
    Graph,
    GraphError,
    TriggerConfig,
    WebhookNode,
    holds,
)

WORKFLOWS = Resource.of(
    "workflows",
    schemas.Workflow,
    "workflow",
    schemas.WorkflowCreate,
    schemas.WorkflowUpdate,
    json_columns=frozenset({"trigger_config", "nodes", "edges"}),
)
# Read only: executions are written by the system.
EXECUTIONS = Resource.of(
    "workflow_executions", schemas.WorkflowExecution, "workflow execution", time_column="started_at"
)


def check_graph(nodes: list[Any], edges: list[Any]) -> Graph:
    """The graph, or a 422 naming the node or edge that is wrong."""
    try:
        graph = Graph.model_validate({"nodes": nodes, "edges": edges})
        graph.check()
    except GraphError as error:
        raise field_error(error.field, error.message) from error
    return graph


def json_values(body: schemas.WorkflowCreate | schemas.WorkflowUpdate) -> dict[str, Any]:
    """The fields sent, as JSON values (nested models and UUIDs included)."""
    return body.model_dump(mode="json", exclude_unset=True)


async def create(tx: TenantTransaction, body: schemas.WorkflowCreate) -> schemas.Workflow:
    check_graph(body.nodes, body.edges)
    values = {**json_values(body), "created_by": tx.user_id}
    values.setdefault("trigger_config", {})
    return WORKFLOWS.out(await WORKFLOWS.table.insert(tx.conn, tx.company_id, values))


async def update(
    tx: TenantTransaction, workflow_id: UUID, body: schemas.WorkflowUpdate
) -> schemas.Workflow:
    changes = json_values(body)
    if "nodes" in changes or "edges" in changes:
        current = await access_row(tx, WORKFLOWS, workflow_id)
        nodes = changes["nodes"] if changes.get("nodes") is not None else current["nodes"]
        edges = changes["edges"] if changes.get("edges") is not None else current["edges"]
        check_graph(nodes, edges)
    return WORKFLOWS.out(await update_row(tx, WORKFLOWS, workflow_id, changes))


async def set_enabled(tx: TenantTransaction, workflow_id: UUID, enabled: bool) -> schemas.Workflow:
    return WORKFLOWS.out(await update_row(tx, WORKFLOWS, workflow_id, {"enabled": enabled}))


async def list_executions(
    tx: TenantTransaction, workflow_id: UUID, paging: PageRequest
) -> Page[schemas.WorkflowExecution]:
    """The runs of one workflow of the caller's company, newest first."""
    await access_row(tx, WORKFLOWS, workflow_id)
    of_workflow = Filter(sql.SQL("workflow_id = %(workflow_id)s"), {"workflow_id": workflow_id})
    return await list_rows(tx, EXECUTIONS, paging, [of_workflow])


def describe_effect(node: Any) -> str | None:
    config = node.config.model_dump(mode="json") if hasattr(node.config, "model_dump") else {}
    if isinstance(node, WebhookNode):
        return f"POST {node.config.url}"
    if isinstance(node, DelayNode):
        return f"wait {node.config.seconds} s"
    if isinstance(node, EndNode | ConditionNode):
        return None
    return f"{node.type} {config}"


async def dry_run(
    tx: TenantTransaction, workflow_id: UUID, trigger_data: dict[str, Any]
) -> schemas.WorkflowTestResult:
    """The path a run would take for this data, without doing anything."""
    row = await access_row(tx, WORKFLOWS, workflow_id)
    graph = check_graph(row["nodes"], row["edges"])
    matches = TriggerConfig.model_validate(row["trigger_config"]).matches(trigger_data)
    path: list[schemas.TestStep] = []
    trigger = graph.trigger()
    queue = graph.successors(trigger.id) if trigger else []
    seen: set[str] = set()
    while queue:
        node = graph.node(queue.pop(0))
        if node.id in seen:
            continue
        seen.add(node.id)
        if isinstance(node, ConditionNode):
            outcome = holds(node.config.when, trigger_data)
            path.append(schemas.TestStep(node_id=node.id, type=node.type, outcome=outcome))
            queue += graph.successors(node.id, outcome)
            continue
        path.append(schemas.TestStep(node_id=node.id, type=node.type, would=describe_effect(node)))
        if isinstance(node, EndNode):
            break
        queue += graph.successors(node.id)
    return schemas.WorkflowTestResult(matches_trigger=matches, path=path)


# The secret is a system column (migration 018): the database makes it.
ROTATE_SECRET = "SELECT public.rotate_workflow_secret(%(company_id)s, %(id)s) AS secret"  # noqa: S105 (SQL)


async def rotate_secret(tx: TenantTransaction, workflow_id: UUID) -> str:
    """A new secret for the workflow (owners and admins), returned once."""
    params = {"company_id": tx.company_id, "id": workflow_id}
    row = await (await tx.conn.execute(ROTATE_SECRET, params)).fetchone()
    if row is None or row["secret"] is None:
        raise not_found(WORKFLOWS.label)
    return str(row["secret"])


# By id alone: the URL names no company. Clients never choose ids (migration 018), and
# should two companies still share one, the hook answers as for an unknown workflow
# (LIMIT 2 tells).
HOOK_TARGET = (
    "SELECT company_id, secret, enabled, trigger_type FROM public.workflows"
    " WHERE id = %(id)s LIMIT 2"
)
ENQUEUE_HOOK = (
    "INSERT INTO public.workflow_events (company_id, event_type, data, workflow_id)"
    " VALUES (%(company_id)s, 'webhook', %(data)s, %(workflow_id)s) RETURNING id"
)


async def receive_hook(
    conn: TenantConnection, workflow_id: UUID, presented: str | None, payload: Any
) -> int:
    """Queue an inbound webhook for its workflow (as the system: the caller is
    authenticated by the workflow's secret, not as a user)."""
    unauthorized = Unauthorized("missing or wrong X-Webhook-Secret", scheme="X-Webhook-Secret")
    if not presented:
        raise unauthorized
    found = await (await conn.execute(HOOK_TARGET, {"id": workflow_id})).fetchall()
    row = found[0] if len(found) == 1 else None
    if row is None or not hmac.compare_digest(row["secret"].encode(), presented.encode()):
        raise unauthorized
    if row["trigger_type"] != "webhook":
        raise Conflict("this workflow is not started by a webhook")
    if not row["enabled"]:
        raise Conflict("this workflow is disabled")
    data = Jsonb({"payload": storable("payload", payload)})
    params = {"company_id": row["company_id"], "data": data}
    cursor = await conn.execute(ENQUEUE_HOOK, {**params, "workflow_id": workflow_id})
    event = await cursor.fetchone()
    assert event is not None  # INSERT … RETURNING
    await conn.execute("SELECT pg_notify('syntera_workflow_events', '')")  # sent at commit
    return int(event["id"])
