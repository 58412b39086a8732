"""/v1/workflows and their executions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Member
from syntera.api.pagination import Page, PageRequest, page_request
from syntera.workflows import service
from syntera.workflows.schemas import WorkflowExecution

workflows = APIRouter(prefix="/v1/workflows", tags=["workflows"])

add_crud_routes(workflows, service.WORKFLOWS, managers_write=True, creation_values=service.creator)


@workflows.get("/{row_id}/executions", response_model=Page[WorkflowExecution])
async def list_workflow_executions(
    tenant: Member, row_id: RowId, paging: Annotated[PageRequest, Depends(page_request)]
) -> Page[WorkflowExecution]:
    """The runs of a workflow, newest first (the audit trail; written by the system)."""
    return await service.list_executions(tenant, row_id, paging)


routers = [workflows]
