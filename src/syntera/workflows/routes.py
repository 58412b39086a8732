"""/v1/workflows, their executions, dry runs and secrets; /v1/hooks for inbound webhooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request

from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Manager, Member
from syntera.api.pagination import page_request
from syntera.api.state import system_transaction
from syntera.kit.pagination import Page, PageRequest
from syntera.kit.schemas import JsonObject
from syntera.workflows import schemas, service

workflows = APIRouter(prefix="/v1/workflows", tags=["workflows"])
hooks = APIRouter(prefix="/v1/hooks", tags=["workflows"])

add_crud_routes(
    workflows, service.WORKFLOWS, managers_write=True, routes=("read", "delete", "list")
)


@workflows.post("", status_code=201, response_model=schemas.Workflow)
async def create_workflow(tx: Manager, body: schemas.WorkflowCreate) -> schemas.Workflow:
    """Create a workflow; its graph is checked (422 naming the node or edge at fault)."""
    return await service.create(tx, body)


@workflows.patch("/{row_id}", response_model=schemas.Workflow)
async def update_workflow(
    tx: Manager, row_id: RowId, body: schemas.WorkflowUpdate
) -> schemas.Workflow:
    """Change the fields sent; a changed graph is checked again."""
    return await service.update(tx, row_id, body)


@workflows.post("/{row_id}/enable", response_model=schemas.Workflow)
async def enable_workflow(tx: Manager, row_id: RowId) -> schemas.Workflow:
    """Start running on its trigger's events."""
    return await service.set_enabled(tx, row_id, True)


@workflows.post("/{row_id}/disable", response_model=schemas.Workflow)
async def disable_workflow(tx: Manager, row_id: RowId) -> schemas.Workflow:
    """Stop: no new runs, and queued runs are cancelled."""
    return await service.set_enabled(tx, row_id, False)


@workflows.post("/{row_id}/test", response_model=schemas.WorkflowTestResult)
async def dry_run_workflow(
    tx: Member, row_id: RowId, body: schemas.WorkflowTest | None = None
) -> schemas.WorkflowTestResult:
    """The path a run would take for sample trigger data; nothing is changed or sent."""
    return await service.dry_run(tx, row_id, body.trigger_data if body else {})


@workflows.post("/{row_id}/secret", response_model=schemas.WorkflowSecret)
async def rotate_workflow_secret(tx: Manager, row_id: RowId) -> schemas.WorkflowSecret:
    """A new secret for inbound and outgoing webhooks (the old one stops working)."""
    return schemas.WorkflowSecret(secret=await service.rotate_secret(tx, row_id))


@workflows.get("/{row_id}/executions", response_model=Page[schemas.WorkflowExecution])
async def list_workflow_executions(
    tx: Member, row_id: RowId, paging: Annotated[PageRequest, Depends(page_request)]
) -> Page[schemas.WorkflowExecution]:
    """The runs of a workflow, newest first (the audit trail; written by the system)."""
    return await service.list_executions(tx, row_id, paging)


@hooks.post("/{workflow_id}", status_code=202, response_model=schemas.HookAccepted)
async def receive_webhook(
    request: Request,
    workflow_id: RowId,
    payload: Annotated[JsonObject, Body(description="Any JSON object; the run's trigger data.")],
    secret: Annotated[
        str | None, Header(alias="X-Webhook-Secret", description="The workflow's secret.")
    ] = None,
) -> schemas.HookAccepted:
    """Start a webhook-triggered workflow with this payload (queued; runs shortly)."""
    async with system_transaction(request) as conn:
        event_id = await service.receive_hook(conn, workflow_id, secret, payload)
    return schemas.HookAccepted(event_id=event_id)


routers = [workflows, hooks]
