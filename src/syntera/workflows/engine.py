"""The workflow worker: turns queued events into executions and runs them, node by node.

Two steps, both as service_role (the system serves every company, and names the company
in every statement; the statements are in ``syntera.workflows.executions``):

1. **Fan-out.** Due events are claimed with ``FOR UPDATE SKIP LOCKED``; each becomes one
   ``pending`` execution per enabled workflow of its company whose trigger type and
   ``trigger_config`` match (``UNIQUE (company_id, workflow_id, event_id)`` makes a
   repeat harmless). An event deeper than ``workflow_max_depth`` (caused by actions of
   workflows caused by actions …) starts nothing but a ``cancelled`` execution that says
   why.
2. **Execution.** A due execution is claimed under a lease and run node by node from its
   ``frontier``. Each node commits its effect (``syntera.workflows.actions``), its result
   in ``steps`` and the new frontier together, while the lease is still this worker's; so
   a worker that dies mid-run leaves the execution to be resumed after the lease, at the
   first node whose result is not recorded, and no action is applied twice. A ``delay``
   node records itself, sets ``run_after`` and releases the lease: the wait survives
   restarts.

The loop that drives the worker is ``syntera.workers``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from syntera.cache import Cache
from syntera.config import Settings
from syntera.db.leases import LeaseLost
from syntera.db.postgres import TenantConnection
from syntera.metrics import WORKFLOW_EXECUTIONS
from syntera.tenancy import Principal
from syntera.unit_of_work import Publisher, open_unit_of_work, system_transaction
from syntera.workflows import actions, executions
from syntera.workflows.actions import ActionFailed, Run
from syntera.workflows.executions import CHANNEL, ExecutionClaim
from syntera.workflows.graph import DelayNode, EndNode, Graph, Node, TriggerConfig, WebhookNode

log = logging.getLogger(__name__)

__all__ = ["CHANNEL", "WorkflowWorker"]


def first_nodes(graph: Graph) -> list[str]:
    trigger = graph.trigger()
    return graph.successors(trigger.id) if trigger else []


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def step_record(node: Node, status: str, result: Any, started: float) -> dict[str, Any]:
    """One entry of an execution's ``steps``: what the node did and how long it took."""
    return {
        "node_id": node.id,
        "type": node.type,
        "status": status,
        "result": result,
        "at": now_text(),
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }


class WorkflowWorker:
    """Fans out events and runs executions."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        *,
        cache: Cache | None = None,
        events: Publisher | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.http = http or httpx.AsyncClient(follow_redirects=False)
        # What an action's after-commit work reaches: the caches it makes stale and the
        # live events it publishes (none when not given).
        self.cache = cache
        self.events = events

    async def run_once(self) -> bool:
        """Fan out due events, then run one due execution; False when idle."""
        fanned = await self.fan_out()
        claim = await self.claim()
        if claim is None:
            return fanned > 0
        await self.execute(claim)
        return True

    # Fan-out ------------------------------------------------------------------------------

    async def fan_out(self, batch: int = 100) -> int:
        """Turn up to ``batch`` due events into executions; the number of events."""
        async with system_transaction(self.pool) as conn:
            events = await executions.claim_events(conn, batch)
            for event in events:
                await self._fan_out_one(conn, event)
            if events:
                await executions.mark_events_done(conn, [event["id"] for event in events])
        return len(events)

    async def _fan_out_one(self, conn: TenantConnection, event: dict[str, Any]) -> None:
        for workflow in await executions.matching_workflows(conn, event):
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
            await executions.create_execution(conn, values)
            if values["status"] != "pending":
                WORKFLOW_EXECUTIONS.labels(values["status"]).inc()

    # Execution ----------------------------------------------------------------------------

    async def claim(self) -> ExecutionClaim | None:
        async with system_transaction(self.pool) as conn:
            return await executions.claim_execution(conn, self.settings.workflow_lease_s)

    async def execute(self, claim: ExecutionClaim) -> None:
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

    async def _step(self, claim: ExecutionClaim) -> bool:
        """Run the next node of the frontier; False when the execution stopped."""
        async with system_transaction(self.pool) as conn:
            held = await executions.lock_execution(conn, claim)
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
        lease_s = self.settings.workflow_lease_s
        async with open_unit_of_work(
            self.pool, Principal.service(), company_id=claim.company_id,
            cache=self.cache, events=self.events,
        ) as tx:  # fmt: skip
            conn = tx.conn
            held = await executions.lock_execution(conn, claim)
            frontier = list(held["frontier"])
            if not frontier or frontier[0] != node.id:
                return True  # the state moved on meanwhile; look again
            rest = frontier[1:]
            if node.id in {step["node_id"] for step in held["steps"]}:
                await executions.record_step(conn, claim, None, rest, lease_s)
                return True
            await executions.mark_action(conn, claim)
            failure: str | None = None
            try:
                async with tx.savepoint():  # a failed action leaves nothing behind
                    result, following = await actions.apply(tx, run, graph, node, outside)
            except ActionFailed as error:
                failure = str(error)
            else:
                step = step_record(node, "ok", result, started)
                queued = [n for n in rest if n != node.id]
                queued += [n for n in following if n not in queued]
                await executions.record_step(conn, claim, step, queued, lease_s)
                if isinstance(node, DelayNode):
                    await executions.pause(conn, claim, node.config.seconds)
                    return False
                if isinstance(node, EndNode):
                    await executions.record_step(conn, claim, None, [], lease_s)
        if failure is not None:
            await self._record_failure(claim, node, frontier, failure)
            return False
        return True

    async def _record_failure(
        self, claim: ExecutionClaim, node: Node, frontier: list[str], message: str
    ) -> None:
        async with system_transaction(self.pool) as conn:
            await executions.lock_execution(conn, claim)
            step = step_record(node, "failed", {"error": message}, time.perf_counter())
            await executions.record_step(
                conn, claim, step, frontier, self.settings.workflow_lease_s
            )
        await self._finish(claim, "failed", f"node {node.id!r} ({node.type}): {message}")

    async def _finish(self, claim: ExecutionClaim, status: str, error: str | None) -> None:
        async with system_transaction(self.pool) as conn:
            await executions.finish(conn, claim, status, error)
        WORKFLOW_EXECUTIONS.labels(status).inc()
