"""Workflows (owners and admins write, members read) and their executions (read only:
the system writes the audit trail)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import sql

from syntera.api.crud import Resource, access_row, list_rows
from syntera.api.deps import Tenant
from syntera.api.pagination import Page, PageRequest
from syntera.db.tables import Filter, TenantTable
from syntera.workflows.schemas import (
    Workflow,
    WorkflowCreate,
    WorkflowExecution,
    WorkflowUpdate,
)

WORKFLOWS = Resource(
    TenantTable(
        "workflows",
        tuple(Workflow.model_fields),
        json_columns=frozenset({"trigger_config", "nodes", "edges"}),
    ),
    Workflow,
    "workflow",
    WorkflowCreate,
    WorkflowUpdate,
)

EXECUTIONS = Resource(
    TenantTable(
        "workflow_executions", tuple(WorkflowExecution.model_fields), time_column="started_at"
    ),
    WorkflowExecution,
    "workflow execution",  # read only: executions are written by the system
)


def creator(tenant: Tenant) -> dict[str, Any]:
    """The workflow's author (none when the service creates it)."""
    return {"created_by": tenant.user_id}


async def list_executions(
    tenant: Tenant, workflow_id: UUID, paging: PageRequest
) -> Page[WorkflowExecution]:
    """The runs of one workflow of the caller's company, newest first."""
    await access_row(tenant, WORKFLOWS, workflow_id)
    of_workflow = Filter(sql.SQL("workflow_id = %(workflow_id)s"), {"workflow_id": workflow_id})
    return await list_rows(tenant, EXECUTIONS, paging, [of_workflow])
