"""Fixtures of the workflow tests: workers (one that may call local receivers, one with
the production address guard) and helpers to create workflows and run the queue dry."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.workflows.engine import WorkflowWorker
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

Drain = Callable[..., Awaitable[int]]
MakeWorkflow = Callable[..., Awaitable[dict[str, Any]]]


def worker_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"workflow_lease_s": 30, **changes})


@pytest.fixture(scope="session")
def worker(api_pool: AsyncConnectionPool[TenantConnection], settings: Settings) -> WorkflowWorker:
    """A worker allowed to call receivers on this machine (the tests' own)."""
    return WorkflowWorker(api_pool, worker_settings(settings, workflow_webhook_allow_private=True))


@pytest.fixture(scope="session")
def guarded_worker(
    api_pool: AsyncConnectionPool[TenantConnection], settings: Settings
) -> WorkflowWorker:
    """A worker with the default guard: no private, loopback or link-local addresses."""
    return WorkflowWorker(api_pool, worker_settings(settings))


@pytest.fixture(scope="session")
def drain(worker: WorkflowWorker) -> Drain:
    """Run the worker until nothing is due; the number of rounds that did work."""

    async def run(chosen: WorkflowWorker | None = None, limit: int = 200) -> int:
        active = chosen or worker
        rounds = 0
        while rounds < limit and await active.run_once():
            rounds += 1
        return rounds

    return run


@pytest.fixture(scope="session")
def make_workflow(client: httpx.AsyncClient, auth: AuthHeaders) -> MakeWorkflow:
    async def create(
        tenant: SeededCompany,
        trigger_type: str,
        nodes: list[dict[str, Any]],
        edges: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A workflow whose nodes follow the trigger in a line unless edges are given."""
        graph = [{"id": "start", "type": "trigger", "config": {}}, *nodes]
        if edges is None:
            edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(graph)]
        response = await client.post(
            "/v1/workflows",
            headers=auth(tenant.owner),
            json={
                "name": "W",
                "trigger_type": trigger_type,
                "nodes": graph,
                "edges": edges,
                **fields,
            },
        )
        assert response.status_code == 201, response.text
        workflow: dict[str, Any] = response.json()
        return workflow

    return create


def executions(owner_conn: psycopg.Connection, workflow_id: str) -> list[dict[str, Any]]:
    with owner_conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return cursor.execute(
            "SELECT * FROM public.workflow_executions WHERE workflow_id = %s"
            " ORDER BY created_at, id",
            (workflow_id,),
        ).fetchall()


def contact_tags(owner_conn: psycopg.Connection, contact_id: object) -> list[str]:
    row = owner_conn.execute(
        "SELECT tags FROM public.contacts WHERE id = %s", (contact_id,)
    ).fetchone()
    assert row is not None
    return list(row[0])


@dataclass(frozen=True)
class Flows:
    """Everything a workflow test drives: the API client and tokens, a fresh company,
    the owner connection to look at the queue, and the workflow helpers."""

    client: httpx.AsyncClient
    auth: AuthHeaders
    tenant: SeededCompany
    owner_conn: psycopg.Connection
    make_workflow: MakeWorkflow
    drain: Drain

    def runs(self, workflow_id: str) -> list[dict[str, Any]]:
        """The executions of a workflow, oldest first."""
        return executions(self.owner_conn, workflow_id)

    def tags(self, contact_id: object) -> list[str]:
        return contact_tags(self.owner_conn, contact_id)


@pytest.fixture
def flows(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    make_workflow: MakeWorkflow,
    drain: Drain,
) -> Flows:
    """The workflow tests' harness, for one fresh company."""
    return Flows(client, auth, tenant, owner_conn, make_workflow, drain)
