"""The insights worker: classifies visitors' messages and summarises conversations,
durably, after the request that caused the work has answered.

Jobs are recorded in the transaction that appends a visitor's message ('classify') or
ends a conversation ('summarize'), through ``private.request_insight`` (migration 029).
A worker claims a batch of classify jobs (or one summary; summaries have a loop of their
own) under a lease, reads what it needs in a short unit of work, classifies or asks the
model with no transaction open (the lease renewed meanwhile), then, in one unit of work
per company under the lease, stores the result in MongoDB, publishes ``message.updated``
(or ``conversation.updated``), queues the ``message_intent`` workflow event and marks the
jobs done. A worker killed midway leaves its jobs under a lease that runs out; the next
claim does them again, and writing the same intent twice changes nothing. Failures are
retried with backoff, then the job is marked failed: an unclassified message or a missing
summary never stops a conversation.

A long conversation is summarised again every ``summary_every_messages`` messages: a
classify round that finds a conversation that many messages past its last summary
queues a summary.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from bson import ObjectId
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from syntera.agents.schemas import Agent
from syntera.agents.service import read_agent
from syntera.cache import Cache
from syntera.config import Settings
from syntera.conversations import service
from syntera.db.mongo import Document
from syntera.db.postgres import TenantConnection
from syntera.errors import NotFound
from syntera.insights.classifier import (
    Classification,
    Classifier,
    ModelClassifier,
    PrototypeClassifier,
    effective_labels,
)
from syntera.insights.store import InsightStore
from syntera.insights.summaries import summarize
from syntera.kb.embeddings import Embedder
from syntera.llm.choice import ChatModels
from syntera.tenancy import Principal
from syntera.unit_of_work import Publisher, TenantTransaction, open_unit_of_work

log = logging.getLogger(__name__)

CHANNEL = "syntera_insights"
T = TypeVar("T")

CLAIM = """
UPDATE syntera.insight_jobs j
SET status = 'running', attempts = j.attempts + 1, lease_token = %(token)s,
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE (j.company_id, j.id) IN (
  SELECT c.company_id, c.id FROM syntera.insight_jobs c
  WHERE c.kind = %(kind)s AND c.status IN ('pending', 'running') AND c.run_after <= now()
    AND (c.status = 'pending' OR c.lease_expires_at < now())
  ORDER BY c.run_after
  LIMIT %(batch)s
  FOR UPDATE SKIP LOCKED
)
RETURNING j.company_id, j.id, j.kind, j.conversation_id, j.message_id, j.attempts
"""

# A claim's lease, renewed while its model works (however long a batch takes).
RENEW = """
UPDATE syntera.insight_jobs
SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE company_id = %(company_id)s AND id = ANY(%(ids)s) AND lease_token = %(token)s
"""

# The jobs of a claim still under its lease, locked until the unit of work ends.
LOCK_LEASED = """
SELECT id FROM syntera.insight_jobs
WHERE company_id = %(company_id)s AND id = ANY(%(ids)s) AND lease_token = %(token)s
FOR UPDATE
"""

DONE = """
UPDATE syntera.insight_jobs
SET status = 'done', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
WHERE company_id = %(company_id)s AND id = ANY(%(ids)s) AND lease_token = %(token)s
"""

RETRY = """
UPDATE syntera.insight_jobs
SET status = 'pending', last_error = %(error)s, lease_token = NULL, lease_expires_at = NULL,
    run_after = now() + make_interval(secs => least(power(2, attempts)::int, 60))
WHERE company_id = %(company_id)s AND id = ANY(%(ids)s) AND lease_token = %(token)s
  AND attempts < %(max_attempts)s
  -- A summary that a newer pending one will write anyway is not retried (a second
  -- pending one would break insight_jobs_one_summary, and this whole update with it);
  -- FAIL then ends it.
  AND NOT (kind = 'summarize' AND EXISTS (
    SELECT 1 FROM syntera.insight_jobs newer
    WHERE newer.company_id = insight_jobs.company_id
      AND newer.conversation_id = insight_jobs.conversation_id
      AND newer.kind = 'summarize' AND newer.status = 'pending'))
"""

FAIL = """
UPDATE syntera.insight_jobs
SET status = 'failed', last_error = %(error)s, finished_at = now(),
    lease_token = NULL, lease_expires_at = NULL
WHERE company_id = %(company_id)s AND id = ANY(%(ids)s) AND lease_token = %(token)s
"""

INTENT_LABELS = "SELECT intent_labels FROM public.companies WHERE id = %(company_id)s"

REQUEST_SUMMARY = """
INSERT INTO syntera.insight_jobs (company_id, kind, conversation_id)
VALUES (%(company_id)s, 'summarize', %(conversation_id)s)
ON CONFLICT DO NOTHING
"""

ENQUEUE_INTENT = "SELECT private.enqueue_workflow_event(%(company_id)s, 'message_intent', %(data)s)"


@dataclass(frozen=True)
class Job:
    company_id: UUID
    id: UUID
    kind: str
    conversation_id: str
    message_id: str | None
    attempts: int


@dataclass(frozen=True)
class Claim:
    """Jobs of one company claimed together under one lease token."""

    company_id: UUID
    jobs: list[Job]
    token: UUID

    def params(self, ids: Sequence[UUID] | None = None) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "ids": list(ids if ids is not None else [job.id for job in self.jobs]),
            "token": self.token,
        }


@dataclass(frozen=True)
class ToClassify:
    """A visitor's message to classify, with what its conversation says."""

    job: Job
    message: Document
    conversation: Document


def classifier_for(settings: Settings, embedder: Embedder, models: ChatModels) -> Classifier:
    """The classifier the settings name (the prototypes unless ``model``)."""
    prototypes = PrototypeClassifier(embedder)
    if settings.insights_classifier == "model":
        return ModelClassifier(models, prototypes)
    return prototypes


class InsightWorker:
    """Claims insight jobs and does them."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        settings: Settings,
        store: InsightStore,
        classifier: Classifier,
        models: ChatModels,
        *,
        cache: Cache | None = None,
        events: Publisher | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.store = store
        self.classifier = classifier
        self.models = models
        self.cache = cache
        self.events = events

    async def run_once(self) -> bool:
        """Classify a batch of messages, or else write one summary; False when idle."""
        return await self.run_classifying() or await self.run_summarizing()

    async def run_classifying(self) -> bool:
        """Classify a batch of messages; False when none was due."""
        return await self._do(await self.claim("classify", self.settings.insights_batch))

    async def run_summarizing(self) -> bool:
        """Write one conversation's summary; False when none was due. The workers run it
        in a loop of its own: a summary never waits behind messages to classify."""
        return await self._do(await self.claim("summarize", 1))

    async def _do(self, claims: list[Claim]) -> bool:
        for claim in claims:
            try:
                if claim.jobs[0].kind == "classify":
                    await self.classify(claim)
                else:
                    await self.summarize(claim)
            except Exception as error:  # the model, a store: tried again, then given up
                await self._failed(claim, error)
        return bool(claims)

    async def claim(self, kind: str, batch: int) -> list[Claim]:
        """Claim up to ``batch`` due jobs of ``kind``, grouped by company."""
        token = uuid.uuid4()
        params = {"kind": kind, "batch": batch, "token": token,
                  "lease_s": self.settings.insights_lease_s}  # fmt: skip
        async with open_unit_of_work(self.pool, Principal.service()) as tx:
            rows = await (await tx.conn.execute(CLAIM, params)).fetchall()
        by_company: dict[UUID, list[Job]] = defaultdict(list)
        for row in rows:
            by_company[row["company_id"]].append(Job(**row))
        return [Claim(company, jobs, token) for company, jobs in by_company.items()]

    def _unit(self, company_id: UUID) -> Any:
        return open_unit_of_work(
            self.pool, Principal.service(), company_id=company_id,
            cache=self.cache, events=self.events,
        )  # fmt: skip

    # Classification ----------------------------------------------------------------------

    async def classify(self, claim: Claim) -> None:
        """Classify the claim's messages and store what they mean and feel."""
        found: list[ToClassify] = []
        models: dict[str, str] = {}
        async with self._unit(claim.company_id) as tx:
            row = await (await tx.conn.execute(INTENT_LABELS, claim.params())).fetchone()
            labels = effective_labels(row["intent_labels"] if row else None)
            by_conversation: dict[str, list[Job]] = defaultdict(list)
            for job in claim.jobs:
                by_conversation[job.conversation_id].append(job)
            for conversation_id, jobs in by_conversation.items():
                if not ObjectId.is_valid(conversation_id):
                    continue
                conversation = await self.store.conversations.get_conversation(
                    claim.company_id, ObjectId(conversation_id)
                )
                if conversation is None:
                    continue
                ids = [job.message_id for job in jobs if job.message_id is not None]
                messages = await self.store.messages(claim.company_id, conversation_id, ids)
                by_id = {str(message["_id"]): message for message in messages}
                agent = await _agent(tx, conversation.get("agent_id"))
                models[conversation_id] = agent.model if agent is not None else ""
                found += [
                    ToClassify(job, by_id[job.message_id], conversation)
                    for job in jobs
                    if job.message_id in by_id
                ]
        results = await self._while_leased(
            claim, self._classified(found, labels, models, str(claim.company_id))
        )
        async with self._unit(claim.company_id) as tx:
            owned = await self._lock(tx, claim)
            for item, result in zip(found, results, strict=True):
                if item.job.id in owned:
                    await self._store_insights(tx, item, result)
            for conversation in {i.job.conversation_id: i.conversation for i in found}.values():
                await self._summary_due(tx, conversation)
            await tx.conn.execute(DONE, claim.params(list(owned)))

    async def _classified(
        self, found: list[ToClassify], labels: Sequence[str], models: dict[str, str], scope: str
    ) -> list[Classification]:
        """Classify the messages, in one call per agent model (the model classifier asks
        each agent's own model)."""
        results: dict[int, Classification] = {}
        by_model: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(found):
            by_model[models.get(item.job.conversation_id, "")].append(index)
        for model, indexes in by_model.items():
            texts = [str(found[index].message.get("content", "")) for index in indexes]
            for index, result in zip(
                indexes,
                await self.classifier.classify(texts, labels, model, scope=scope),
                strict=True,
            ):
                results[index] = result
        return [results[index] for index in range(len(found))]

    async def _while_leased(self, claim: Claim, work: Awaitable[T]) -> T:
        """``work``'s result, the claim's lease renewed every third of it meanwhile: a
        batch a slow model takes longer than a lease over is not taken over (and done
        twice) by another worker."""
        renewing = asyncio.ensure_future(self._renew_every(claim))
        try:
            return await work
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def _renew_every(self, claim: Claim) -> None:
        lease_s = self.settings.insights_lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                async with self._unit(claim.company_id) as tx:
                    await tx.conn.execute(RENEW, {**claim.params(), "lease_s": lease_s})
            except Exception:  # tried again at the next third; the lease may run out
                log.warning("insight jobs of company %s: lease not renewed", claim.company_id)

    async def _lock(self, tx: TenantTransaction, claim: Claim) -> set[UUID]:
        rows = await (await tx.conn.execute(LOCK_LEASED, claim.params())).fetchall()
        return {row["id"] for row in rows}

    async def _store_insights(
        self, tx: TenantTransaction, item: ToClassify, result: Classification
    ) -> None:
        """Store a message's intent and sentiment, publish it, queue the workflows."""
        metadata = result.metadata()
        oid = item.message["_id"]
        service.invalidate_cached(tx, ObjectId(item.job.conversation_id), service.MESSAGES)
        changed = await self.store.set_insights(
            tx.company_id, item.job.conversation_id, oid, metadata, item.conversation
        )
        if changed is None:
            return
        service.publish(tx, "message.updated", service.message_out(changed))
        data = {
            "conversation_id": item.job.conversation_id,
            "message_id": str(oid),
            "agent_id": item.conversation.get("agent_id"),
            "contact_id": item.conversation.get("contact_id"),
            "channel": item.conversation.get("channel"),
            "content": str(item.message.get("content", ""))[:2000],
            **metadata,
        }
        await tx.conn.execute(ENQUEUE_INTENT, {"company_id": tx.company_id, "data": Jsonb(data)})

    async def _summary_due(self, tx: TenantTransaction, conversation: Document) -> None:
        """Queue a summary of a conversation ``summary_every_messages`` past its last
        (its ``message_count`` is kept with every message written)."""
        every = self.settings.summary_every_messages
        if every <= 0:
            return
        count = int(conversation.get("message_count") or 0)
        if count - int(conversation.get("summary_message_count") or 0) >= every:
            params = {"company_id": tx.company_id, "conversation_id": str(conversation["_id"])}
            await tx.conn.execute(REQUEST_SUMMARY, params)

    # Summaries ---------------------------------------------------------------------------

    async def summarize(self, claim: Claim) -> None:
        """Write the conversation's summary with its agent's model."""
        job = claim.jobs[0]
        if not ObjectId.is_valid(job.conversation_id):
            await self._done(claim)
            return
        oid = ObjectId(job.conversation_id)
        async with self._unit(claim.company_id) as tx:
            conversation = await self.store.conversations.get_conversation(tx.company_id, oid)
            agent = await _agent(tx, (conversation or {}).get("agent_id"))
            count = int((conversation or {}).get("message_count") or 0)
            recent = await self.store.conversations.list_messages(tx.company_id, oid, limit=200)
        if conversation is None or agent is None or count == 0:
            await self._done(claim)
            return
        messages = list(reversed(recent.documents))
        text = await self._while_leased(
            claim, summarize(self.models, self.settings, agent, messages)
        )
        async with self._unit(claim.company_id) as tx:
            if not await self._lock(tx, claim):
                return
            service.invalidate_cached(tx, oid, service.HEADER)
            changes = {"summary": text, "summary_message_count": count}
            changed = await self.store.conversations.update(tx.company_id, oid, changes)
            if changed is not None:
                service.publish(tx, "conversation.updated", service.conversation_out(changed))
            await tx.conn.execute(DONE, claim.params())

    async def _done(self, claim: Claim) -> None:
        async with self._unit(claim.company_id) as tx:
            await tx.conn.execute(DONE, claim.params())

    async def _failed(self, claim: Claim, error: Exception) -> None:
        log.warning("insight jobs of company %s failed: %r", claim.company_id, error)
        params = {**claim.params(), "error": repr(error)[:2000],
                  "max_attempts": self.settings.insights_max_attempts}  # fmt: skip
        try:
            async with self._unit(claim.company_id) as tx:
                await tx.conn.execute(RETRY, params)
                await tx.conn.execute(FAIL, params)  # those past their last try
        except Exception:
            log.exception("insight jobs of company %s: the failure was not recorded",
                          claim.company_id)  # fmt: skip


async def _agent(tx: TenantTransaction, agent_id: Any) -> Agent | None:
    if agent_id is None:
        return None
    try:
        return await read_agent(tx, UUID(str(agent_id)))
    except (NotFound, ValueError):
        return None
