"""The workflow worker: turns queued events into executions and runs them.

Two steps, both as service_role (the system serves every company, and names the company
in every statement):

1. **Fan-out.** Due events are claimed with ``FOR UPDATE SKIP LOCKED``; each becomes one
   ``pending`` execution per enabled workflow of its company whose trigger type and
   ``trigger_config`` match (``UNIQUE (workflow_id, event_id)`` makes a repeat harmless).
   An event deeper than ``workflow_max_depth`` (caused by actions of workflows caused by
   actions …) starts nothing but a ``cancelled`` execution that says why.
2. **Execution.** A due execution is claimed under a lease and run node by node from its
   ``frontier``. Each node commits its effect, its result in ``steps`` and the new
   frontier together, while the lease is still this worker's; so a worker that dies
   mid-run leaves the execution to be resumed after the lease, at the first node whose
   result is not recorded, and no action is applied twice. A ``delay`` node records
   itself, sets ``run_after`` and releases the lease: the wait survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from syntera.config import Settings
from syntera.db.postgres import TenantConnection, transaction_as
from syntera.metrics import WORKFLOW_EXECUTIONS
from syntera.tenancy import Principal
from syntera.workflows import actions
from syntera.workflows.actions import ActionFailed, Run
from syntera.workflows.graph import (
    ConditionNode,
    CreateDealNode,
    DealStageNode,
    DelayNode,
    EndNode,
    Graph,
    Node,
    NotificationNode,
    TagNode,
    TriggerConfig,
    UpdateContactNode,
    WebhookNode,
    holds,
)

log = logging.getLogger(__name__)

SYSTEM = Principal.service()
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
ON CONFLICT (workflow_id, event_id) DO NOTHING
"""

EVENTS_DONE = "UPDATE public.workflow_events SET processed_at = now() WHERE id = ANY(%(ids)s)"

CLAIM_EXECUTION = """
UPDATE public.workflow_executions e
SET status = 'running', attempts = e.attempts + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE e.id = (
  SELECT id FROM public.workflow_executions
  WHERE status IN ('pending', 'running') AND run_after <= now()
    AND (lease_expires_at IS NULL OR lease_expires_at < now())
  ORDER BY run_after
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING e.id, e.company_id, e.workflow_id, e.trigger_data, e.depth, e.attempts,
          e.lease_token, e.started_at
"""

HOLD = """
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
class Claim:
    id: UUID
    company_id: UUID
    workflow_id: UUID
    trigger_data: dict[str, Any]
    depth: int
    attempts: int
    lease_token: UUID
    started_at: datetime


class LeaseLost(Exception):
    """Another worker holds the execution now."""


def first_nodes(graph: Graph) -> list[str]:
    trigger = graph.trigger()
    return graph.successors(trigger.id) if trigger else []


def now_text() -> str:
    return datetime.now(UTC).isoformat()


class WorkflowWorker:
    """Fans out events and runs executions until told to stop."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        settings: Settings,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.http = http or httpx.AsyncClient(follow_redirects=False)

    # Fan-out ------------------------------------------------------------------------------

    async def fan_out(self, batch: int = 100) -> int:
        """Turn up to ``batch`` due events into executions; the number of events."""
        async with transaction_as(self.pool, SYSTEM) as conn:
            events = await (await conn.execute(CLAIM_EVENTS, {"batch": batch})).fetchall()
            for event in events:
                await self._fan_out_one(conn, event)
            if events:
                await conn.execute(EVENTS_DONE, {"ids": [event["id"] for event in events]})
        return len(events)

    async def _fan_out_one(self, conn: TenantConnection, event: dict[str, Any]) -> None:
        workflows = await (await conn.execute(MATCHING_WORKFLOWS, event)).fetchall()
        for workflow in workflows:
            values: dict[str, Any] = {
                "company_id": event["company_id"],
                "workflow_id": workflow["id"],
                "status": "pending",
                "trigger_type": event["event_type"],
                "trigger_data": Jsonb(event["data"]),
                "triggered_by": "webhook" if event["event_type"] == "webhook" else "event",
                "event_id": event["id"],
                "depth": event["depth"],
                "frontier": Jsonb([]),
                "error": None,
            }
            try:
                config = TriggerConfig.model_validate(workflow["trigger_config"])
                graph = Graph.model_validate(workflow)
                graph.check()
            except (ValidationError, ValueError) as error:
                values.update(status="failed", error=f"the workflow is not runnable: {error}")
            else:
                if not config.matches(event["data"]):
                    continue
                if event["depth"] > self.settings.workflow_max_depth:
                    values.update(
                        status="cancelled",
                        error=f"loop guard: started by a chain of {event['depth']} workflow "
                        f"actions (limit {self.settings.workflow_max_depth})",
                    )
                values["frontier"] = Jsonb(first_nodes(graph))
            await conn.execute(CREATE_EXECUTION, values)
            if values["status"] != "pending":
                WORKFLOW_EXECUTIONS.labels(values["status"]).inc()

    # Execution ----------------------------------------------------------------------------

    async def claim(self) -> Claim | None:
        async with transaction_as(self.pool, SYSTEM) as conn:
            row = await (
                await conn.execute(CLAIM_EXECUTION, {"lease_s": self.settings.workflow_lease_s})
            ).fetchone()
        return Claim(**row) if row else None

    async def run_once(self) -> bool:
        """Fan out due events, then run one due execution; False when idle."""
        fanned = await self.fan_out()
        claim = await self.claim()
        if claim is None:
            return fanned > 0
        await self.execute(claim)
        return True

    async def execute(self, claim: Claim) -> None:
        """Run the execution's frontier until it ends, pauses or fails."""
        try:
            while await self._step(claim):
                pass
        except LeaseLost:
            log.info("execution %s is no longer this worker's", claim.id)
        except Exception as error:  # the database went away, a bug: retried after the lease
            log.exception("execution %s stopped (attempt %d)", claim.id, claim.attempts)
            if claim.attempts >= self.settings.workflow_max_attempts:
                await self._finish(claim, "failed", f"{type(error).__name__}: {error}")

    async def _hold(self, conn: TenantConnection, claim: Claim) -> dict[str, Any]:
        params = {"company_id": claim.company_id, "id": claim.id, "token": claim.lease_token}
        row = await (await conn.execute(HOLD, params)).fetchone()
        if row is None:
            raise LeaseLost
        return dict(row)

    async def _step(self, claim: Claim) -> bool:
        """Run the next node of the frontier; False when the execution stopped."""
        async with transaction_as(self.pool, SYSTEM) as conn:
            held = await self._hold(conn, claim)
        if not held["enabled"]:
            await self._finish(claim, "cancelled", "the workflow was disabled")
            return False
        frontier: list[str] = list(held["frontier"])
        if not frontier:
            await self._finish(claim, "success", None)
            return False
        graph = Graph.model_validate(held)
        node = graph.node(frontier[0])
        done = {step["node_id"] for step in held["steps"]}
        run = Run(claim.company_id, claim.id, claim.workflow_id, held["secret"], claim.trigger_data)

        outside: dict[str, Any] | None = None  # a webhook's answer, obtained before the step
        if isinstance(node, WebhookNode) and node.id not in done:
            try:
                outside = await actions.send_webhook(
                    self.http, run, node, self.settings.workflow_webhook_allow_private
                )
            except ActionFailed as error:
                await self._record_failure(claim, node, frontier, str(error))
                return False

        started = time.perf_counter()
        async with transaction_as(self.pool, SYSTEM) as conn:
            held = await self._hold(conn, claim)
            frontier = list(held["frontier"])
            if not frontier or frontier[0] != node.id:
                return True  # the state moved on meanwhile; look again
            rest = frontier[1:]
            if node.id in {step["node_id"] for step in held["steps"]}:
                await self._record(conn, claim, None, rest)
                return True
            await conn.execute(
                ACTION_CONTEXT, {"depth": str(claim.depth + 1), "execution": str(claim.id)}
            )
            failure: str | None = None
            try:
                async with conn.transaction():  # a failed action leaves nothing behind
                    result, following = await self._apply(conn, run, graph, node, outside)
            except ActionFailed as error:
                failure = str(error)
            else:
                step = self._step_record(node, "ok", result, started)
                queued = [n for n in rest if n != node.id]
                queued += [n for n in following if n not in queued]
                await self._record(conn, claim, step, queued)
                if isinstance(node, DelayNode):
                    await conn.execute(PAUSE, {"seconds": node.config.seconds, "id": claim.id})
                    return False
                if isinstance(node, EndNode):
                    await self._record(conn, claim, None, [])
        if failure is not None:
            await self._record_failure(claim, node, frontier, failure)
            return False
        return True

    async def _apply(
        self,
        conn: TenantConnection,
        run: Run,
        graph: Graph,
        node: Node,
        outside: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], list[str]]:
        """The node's effect, in the step's transaction; its result and next nodes."""
        following = graph.successors(node.id)
        match node:
            case ConditionNode():
                outcome = holds(node.config.when, run.trigger_data)
                return {"outcome": outcome}, graph.successors(node.id, outcome)
            case TagNode():
                return await actions.tag(conn, run, node), following
            case UpdateContactNode():
                return await actions.update_contact(conn, run, node), following
            case CreateDealNode():
                return await actions.create_deal(conn, run, node), following
            case DealStageNode():
                return await actions.update_deal_stage(conn, run, node), following
            case NotificationNode():
                return await actions.notify(conn, run, node), following
            case WebhookNode():
                return outside or {}, following
            case DelayNode():
                return {"resume_after_s": node.config.seconds}, following
            case EndNode():
                return {}, []
        return {}, following  # the trigger node is never queued

    @staticmethod
    def _step_record(node: Node, status: str, result: Any, started: float) -> dict[str, Any]:
        return {
            "node_id": node.id,
            "type": node.type,
            "status": status,
            "result": result,
            "at": now_text(),
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }

    async def _record(
        self,
        conn: TenantConnection,
        claim: Claim,
        step: dict[str, Any] | None,
        frontier: list[str],
    ) -> None:
        await conn.execute(
            RECORD_STEP,
            {
                "step": Jsonb([step] if step else []),
                "frontier": Jsonb(frontier),
                "lease_s": self.settings.workflow_lease_s,
                "id": claim.id,
            },
        )

    async def _record_failure(
        self, claim: Claim, node: Node, frontier: list[str], message: str
    ) -> None:
        async with transaction_as(self.pool, SYSTEM) as conn:
            await self._hold(conn, claim)
            step = self._step_record(node, "failed", {"error": message}, time.perf_counter())
            await self._record(conn, claim, step, frontier)
        await self._finish(claim, "failed", f"node {node.id!r} ({node.type}): {message}")

    async def _finish(self, claim: Claim, status: str, error: str | None) -> None:
        async with transaction_as(self.pool, SYSTEM) as conn:
            await conn.execute(
                FINISH,
                {"status": status, "error": error, "id": claim.id, "token": claim.lease_token},
            )
        WORKFLOW_EXECUTIONS.labels(status).inc()

    # The loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except (psycopg.Error, OSError):
                log.exception("workflow worker: the database is unavailable")
                worked = False
            if not worked:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.settings.workflow_poll_s)


async def listen(conninfo: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set ``wake`` whenever an event is committed (NOTIFY is delivered at commit)."""
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                while not stop.is_set():
                    async for _ in conn.notifies(timeout=1.0, stop_after=1):
                        wake.set()
        except psycopg.Error:
            log.warning("workflow worker: LISTEN failed; polling until it is back")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)


async def run_workflow_workers(
    pool: AsyncConnectionPool[TenantConnection],
    conninfo: str,
    settings: Settings,
    concurrency: int,
    stop: asyncio.Event,
) -> None:
    """``concurrency`` workers woken by one LISTEN connection, until ``stop`` is set."""
    wake = asyncio.Event()
    async with httpx.AsyncClient(follow_redirects=False) as http:
        worker = WorkflowWorker(pool, settings, http)
        await asyncio.gather(
            listen(conninfo, wake, stop), *(worker.run(stop, wake) for _ in range(concurrency))
        )
