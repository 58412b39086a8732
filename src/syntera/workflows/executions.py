"""The workflow queue's statements, one function per operation on events and executions.

Everything here runs as service_role (``syntera.unit_of_work.system_transaction``) and names
the company or the lease it acts under. Events are claimed with ``FOR UPDATE SKIP
LOCKED`` (workers never wait for each other); an execution is claimed under a lease, and
every later write checks the lease token, so a worker whose lease ran out writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from syntera.db.leases import lock_leased
from syntera.db.postgres import TenantConnection

CHANNEL = "syntera_workflow_events"

CLAIM_EVENTS = """
SELECT id, company_id, event_type, data, workflow_id, depth, caused_by
FROM public.workflow_events
WHERE processed_at IS NULL
ORDER BY id
LIMIT %(batch)s
FOR UPDATE SKIP LOCKED
"""

MATCHING_WORKFLOWS = """
SELECT id, trigger_config, nodes, edges FROM public.workflows
WHERE company_id = %(company_id)s AND enabled AND trigger_type = %(event_type)s
  AND (%(workflow_id)s::uuid IS NULL OR id = %(workflow_id)s)
"""

CREATE_EXECUTION = """
INSERT INTO public.workflow_executions
  (company_id, workflow_id, status, trigger_type, trigger_data, triggered_by, event_id, depth,
   frontier, error, finished_at)
VALUES (%(company_id)s, %(workflow_id)s, %(status)s, %(trigger_type)s, %(trigger_data)s,
        %(triggered_by)s, %(event_id)s, %(depth)s, %(frontier)s, %(error)s,
        CASE WHEN %(status)s = 'pending' THEN NULL ELSE now() END)
ON CONFLICT (company_id, workflow_id, event_id) DO NOTHING
"""

EVENTS_DONE = "UPDATE public.workflow_events SET processed_at = now() WHERE id = ANY(%(ids)s)"

CLAIM_EXECUTION = """
UPDATE public.workflow_executions e
SET status = 'running', attempts = e.attempts + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE (e.company_id, e.id) = (
  SELECT company_id, id FROM public.workflow_executions
  WHERE status IN ('pending', 'running') AND run_after <= now()
    AND (lease_expires_at IS NULL OR lease_expires_at < now())
  ORDER BY run_after
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING e.id, e.company_id, e.workflow_id, e.trigger_data, e.depth, e.attempts,
          e.lease_token, e.started_at
"""

# The execution under this worker's lease, with its workflow's graph, locked until the
# step's transaction ends.
LOCK_LEASED_EXECUTION = """
SELECT e.steps, e.frontier, w.nodes, w.edges, w.enabled, w.secret
FROM public.workflow_executions e
JOIN public.workflows w ON w.company_id = e.company_id AND w.id = e.workflow_id
WHERE e.company_id = %(company_id)s AND e.id = %(id)s AND e.lease_token = %(token)s
FOR UPDATE OF e
"""

RECORD_STEP = """
UPDATE public.workflow_executions
SET steps = steps || %(step)s, frontier = %(frontier)s,
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE id = %(id)s
"""

PAUSE = """
UPDATE public.workflow_executions
SET run_after = now() + make_interval(secs => %(seconds)s), lease_token = NULL,
    lease_expires_at = NULL
WHERE id = %(id)s
"""

FINISH = """
UPDATE public.workflow_executions
SET status = %(status)s, error = %(error)s, finished_at = now(), lease_token = NULL,
    lease_expires_at = NULL, frontier = '[]',
    execution_time_ms = (extract(epoch FROM now() - started_at) * 1000)::int
WHERE id = %(id)s AND lease_token = %(token)s
"""

# Marks the transaction of an action, so the events it causes carry depth + 1.
ACTION_CONTEXT = """
SELECT set_config('syntera.workflow_depth', %(depth)s, true),
       set_config('syntera.workflow_execution', %(execution)s, true)
"""


@dataclass(frozen=True)
class ExecutionClaim:
    """An execution a worker holds under a lease."""

    id: UUID
    company_id: UUID
    workflow_id: UUID
    trigger_data: dict[str, Any]
    depth: int
    attempts: int
    lease_token: UUID
    started_at: datetime


async def claim_events(conn: TenantConnection, batch: int) -> list[dict[str, Any]]:
    """Up to ``batch`` unprocessed events, oldest first, locked for this transaction."""
    return await (await conn.execute(CLAIM_EVENTS, {"batch": batch})).fetchall()


async def matching_workflows(conn: TenantConnection, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The enabled workflows of the event's company and trigger type (and, for a webhook
    event, only the workflow it names)."""
    return await (await conn.execute(MATCHING_WORKFLOWS, event)).fetchall()


async def create_execution(conn: TenantConnection, values: dict[str, Any]) -> None:
    """An execution of ``values`` (once per workflow and event: a repeat is ignored)."""
    await conn.execute(CREATE_EXECUTION, values)


async def mark_events_done(conn: TenantConnection, event_ids: list[int]) -> None:
    await conn.execute(EVENTS_DONE, {"ids": event_ids})


async def claim_execution(conn: TenantConnection, lease_s: float) -> ExecutionClaim | None:
    """The oldest due execution, leased to this worker for ``lease_s``; None if none."""
    row = await (await conn.execute(CLAIM_EXECUTION, {"lease_s": lease_s})).fetchone()
    return ExecutionClaim(**row) if row else None


async def lock_execution(conn: TenantConnection, claim: ExecutionClaim) -> dict[str, Any]:
    """The execution's steps and frontier and its workflow's graph, locked; LeaseLost
    when the lease is no longer this worker's."""
    params = {"company_id": claim.company_id, "id": claim.id, "token": claim.lease_token}
    return await lock_leased(conn, LOCK_LEASED_EXECUTION, params)


async def record_step(
    conn: TenantConnection,
    claim: ExecutionClaim,
    step: dict[str, Any] | None,
    frontier: list[str],
    lease_s: float,
) -> None:
    """Append ``step`` (if any) to the audit trail, set the frontier, renew the lease."""
    await conn.execute(
        RECORD_STEP,
        {
            "step": Jsonb([step] if step else []),
            "frontier": Jsonb(frontier),
            "lease_s": lease_s,
            "id": claim.id,
        },
    )


async def pause(conn: TenantConnection, claim: ExecutionClaim, seconds: int) -> None:
    """Release the lease and make the execution due again in ``seconds``."""
    await conn.execute(PAUSE, {"seconds": seconds, "id": claim.id})


async def finish(
    conn: TenantConnection, claim: ExecutionClaim, status: str, error: str | None
) -> None:
    """End the execution with ``status`` (while the lease is still this worker's)."""
    params = {"status": status, "error": error, "id": claim.id, "token": claim.lease_token}
    await conn.execute(FINISH, params)


async def mark_action(conn: TenantConnection, claim: ExecutionClaim) -> None:
    """Mark the transaction as a workflow action's, so the events it causes carry the
    next depth (the loop guard)."""
    params = {"depth": str(claim.depth + 1), "execution": str(claim.id)}
    await conn.execute(ACTION_CONTEXT, params)
