"""The reply worker: an enabled agent answers the visitor, durably and exactly once.

The visitor's message records a reply job in its own transaction (migration 026,
``service._request_reply``). A worker claims the job under a lease, choosing at the first
claim the MongoDB _id of the reply (kept by every later claim); reads the agent, the
conversation and the sources in short units of work, closed before the model is asked;
streams the answer to the widget's and the team's streams as ephemeral ``message.delta``
events; then, in one unit of work under the lease, stores the reply whole and marks the
job done. A worker killed mid-answer leaves the job under a lease that runs out: the next
claim asks again, and a reply already stored under the job's _id is never stored twice.
A model that fails (or any other failure) is retried with backoff; after the last try
the conversation passes to people (``handled_by: "human"``) with one polite line to the
visitor. A spent monthly token budget, or a knowledge base with nothing on the question
twice in a row, passes it to people too; a company writes at most
``reply_company_concurrency`` replies at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bson import ObjectId
from psycopg_pool import AsyncConnectionPool
from pymongo.errors import DuplicateKeyError

from syntera.agents.answers import AnswerPlan, Reply, plan_answer
from syntera.agents.prompt import find_sources_alone
from syntera.agents.schemas import Agent
from syntera.agents.service import read_agent
from syntera.cache import Cache
from syntera.config import Settings
from syntera.conversations import search, service
from syntera.conversations.store import ConversationStore
from syntera.db.leases import LeaseLost, lock_leased
from syntera.db.mongo import Document
from syntera.db.postgres import TenantConnection
from syntera.errors import NotFound
from syntera.events.model import Event
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.llm.choice import ChatModels
from syntera.llm.models import ChatMessage, ModelError
from syntera.tenancy import Principal
from syntera.unit_of_work import (
    Publisher,
    TenantTransaction,
    open_unit_of_work,
    system_statement,
)

log = logging.getLogger(__name__)

CHANNEL = "syntera_agent_replies"
HISTORY_MESSAGES = 50
EMPTY_RETRIEVALS = 2  # turns in a row with no source above the threshold: hand off

# The claim brings what every answer reads first, in the same round trip: the agent (a
# deleted one: NULLs) and whether the company's monthly token budget (NULL: unlimited,
# and then nothing is summed) is spent, this month (UTC).
CLAIM = """
WITH claimed AS (
UPDATE syntera.agent_replies r
SET status = 'running', attempts = r.attempts + 1,
    lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    reply_id = coalesce(r.reply_id, %(reply_id)s)
WHERE (r.company_id, r.id) = (
  SELECT j.company_id, j.id FROM syntera.agent_replies j
  WHERE j.status IN ('pending', 'running') AND j.run_after <= now()
    AND (j.status = 'pending' OR j.lease_expires_at < now())
    AND NOT EXISTS (
      SELECT 1 FROM syntera.agent_replies o
      WHERE o.company_id = j.company_id AND o.conversation_id = j.conversation_id
        AND o.status = 'running' AND o.id <> j.id
        AND (o.lease_expires_at >= now() OR o.created_at < j.created_at)
    )
    -- The company's cap on replies being written at once.
    AND (
      SELECT count(*) FROM syntera.agent_replies w
      WHERE w.company_id = j.company_id AND w.status = 'running'
        AND w.lease_expires_at >= now() AND w.run_after <= now() AND w.id <> j.id
    ) < %(company_cap)s
  ORDER BY j.run_after
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING r.company_id, r.id, r.conversation_id, r.agent_id, r.last_message_id,
          r.first_message_at, r.reply_id, r.attempts, r.lease_token
)
SELECT claimed.*,
       CASE WHEN c.monthly_token_budget IS NULL THEN false
            ELSE (SELECT coalesce(sum(s.tokens_used), 0) FROM syntera.agent_replies s
                  WHERE s.company_id = claimed.company_id AND s.tokens_used > 0
                    AND s.finished_at >= date_trunc('month', now() AT TIME ZONE 'UTC')
                                         AT TIME ZONE 'UTC'
                 ) >= c.monthly_token_budget
       END AS budget_spent,
       c.owner_id AS company_owner_id,
       AGENT_COLUMNS
FROM claimed
LEFT JOIN public.companies c ON c.id = claimed.company_id
LEFT JOIN public.agent_configs a ON a.company_id = claimed.company_id AND a.id = claimed.agent_id
""".replace("AGENT_COLUMNS", ", ".join(f"a.{name} AS agent__{name}" for name in Agent.model_fields))

LOCK_LEASED = """
SELECT id FROM syntera.agent_replies
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s FOR UPDATE
"""

RENEW = """
UPDATE syntera.agent_replies
SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""

# A job claimed by a worker that stopped before starting it: anyone's again at once, as
# if never tried (its reply _id kept), and the workers woken for it.
RELEASE = """
WITH released AS (
  UPDATE syntera.agent_replies
  SET attempts = greatest(attempts - 1, 0), lease_token = NULL, lease_expires_at = now()
  WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
    AND status = 'running'
  RETURNING 1
)
SELECT pg_notify('syntera_agent_replies', '') FROM released
"""

# A finished reply frees one of its company's slots: the workers are woken (at commit)
# for the company's replies that waited for it, if one does (a NOTIFY wakes every
# process's claiming loop; none is woken for nothing): a pending one that is due, or one
# whose lease ran out (a dead worker's, or a retry's wait over). A worker's own free slot
# needs no wake-up: its loop claims as soon as one is free.
DONE = """
WITH done AS (
  UPDATE syntera.agent_replies
  SET status = 'done', finished_at = now(), lease_token = NULL, lease_expires_at = NULL,
      tokens_used = %(tokens)s
  WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
  RETURNING 1
)
SELECT pg_notify('syntera_agent_replies', '') FROM done
WHERE EXISTS (
  SELECT 1 FROM syntera.agent_replies w
  WHERE w.company_id = %(company_id)s AND w.status IN ('pending', 'running')
    AND w.run_after <= now() AND (w.status = 'pending' OR w.lease_expires_at < now())
)
"""

# Still 'running' (a conversation has one job waiting at most: a new one may be there),
# under a lease that runs out when the job is due again.
RETRY = """
UPDATE syntera.agent_replies
SET last_error = %(error)s, run_after = now() + make_interval(secs => %(delay_s)s),
    lease_expires_at = now() + make_interval(secs => %(delay_s)s)
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""

FAIL = """
UPDATE syntera.agent_replies
SET status = 'failed', last_error = %(error)s, finished_at = now(),
    lease_token = NULL, lease_expires_at = NULL
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""


@dataclass(frozen=True)
class Job:
    company_id: UUID
    id: UUID
    conversation_id: str
    agent_id: UUID
    last_message_id: str
    first_message_at: datetime
    reply_id: str
    attempts: int
    lease_token: UUID
    budget_spent: bool = False
    agent: Agent | None = None  # as it was at the claim; None if it is gone
    company_owner_id: UUID | None = None  # whose row-level security the search runs under
    claimed_at: float = field(default_factory=time.monotonic)

    @classmethod
    def claimed(cls, row: dict[str, Any]) -> Job:
        """The job of a CLAIM's row, with its agent."""
        agent = {name.removeprefix("agent__"): row.pop(name) for name in list(row)
                 if name.startswith("agent__")}  # fmt: skip
        if agent["id"] is None:
            return cls(**row)
        return cls(**row, agent=Agent.model_validate(agent))

    @property
    def lease(self) -> dict[str, Any]:
        return {"company_id": self.company_id, "id": self.id, "token": self.lease_token}


class ReplyWorker:
    """Claims reply jobs and writes the agents' answers."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        settings: Settings,
        store: ConversationStore,
        kb: KnowledgeBase,
        models: ChatModels,
        *,
        cache: Cache | None = None,
        events: Publisher | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.store = store
        self.kb = kb
        self.models = models
        self.cache = cache
        self.events = events
        self._slots: asyncio.Semaphore | None = None  # made in the loop that uses it
        self._in_flight: dict[asyncio.Task[None], Job] = {}
        self._asked: set[UUID] = set()  # jobs whose model was asked: no longer released
        self._halted = False

    async def run_once(self) -> bool:
        """Claim and answer one reply job; False when none was due."""
        job = await self.claim()
        if job is None:
            return False
        await self._answer(job)
        return True

    async def run_spawning(self) -> bool:
        """Claim one reply job and answer it in a task of its own, once one of the
        process's ``reply_worker_concurrency`` slots is free; False when none was due.

        An answer mostly waits for the model, so one loop claiming and many answers in
        flight beat a few loops that each wait out a whole answer before claiming the
        next (the visitors' first tokens then queued behind other visitors' answers)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.reply_worker_concurrency)
        slots = self._slots
        await slots.acquire()
        if self._halted:  # stopping: claim nothing more (halt woke this wait)
            slots.release()
            return False
        try:
            job = await self.claim()
        except BaseException:
            slots.release()
            raise
        if job is None:
            slots.release()
            return False
        task = asyncio.create_task(self._answer(job))
        self._in_flight[task] = job

        def finished(done: asyncio.Task[None]) -> None:
            self._in_flight.pop(done)
            slots.release()

        task.add_done_callback(finished)
        return True

    def halt(self) -> None:
        """Claim nothing more (called as the workers stop, before ``stop``): a claiming
        round waiting for a free slot returns without claiming."""
        self._halted = True
        if self._slots is not None:
            self._slots.release()  # wakes the round waiting for a slot, if one is

    async def stop(self) -> None:
        """Stop the answers in flight. Jobs whose model was asked stay under their leases
        and are taken over once those run out (nothing half-written is stored); those
        claimed but not yet asked are released, anyone's again at once."""
        self._halted = True
        in_flight = dict(self._in_flight)
        unasked = [job for job in in_flight.values() if job.id not in self._asked]
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        for job in unasked:
            try:
                async with self._unit(job) as tx:
                    await tx.conn.execute(RELEASE, job.lease)
            except Exception:  # its lease runs out instead
                log.warning("reply %s: not released as the worker stopped", job.id)

    async def _answer(self, job: Job) -> None:
        try:
            await self.carry_out(job)
        except LeaseLost:
            log.warning("reply %s: lease lost, another worker has it", job.id)
        except Exception as error:  # the model, a store: tried again, then handed off
            await self._failed(job, error)
        finally:
            self._asked.discard(job.id)

    async def claim(self) -> Job | None:
        """The next due job, claimed under a lease in one round trip; None if none is."""
        params = {
            "lease_s": self.settings.reply_lease_s,
            "reply_id": str(ObjectId()),
            "company_cap": self.settings.reply_company_concurrency,
        }
        rows = await system_statement(self.pool, CLAIM, params)
        return Job.claimed(dict(rows[0])) if rows else None

    def _unit(self, job: Job) -> Any:
        return open_unit_of_work(
            self.pool, Principal.service(), company_id=job.company_id,
            cache=self.cache, events=self.events,
        )  # fmt: skip

    async def carry_out(self, job: Job) -> None:
        conversation_oid = ObjectId(job.conversation_id)
        reply_oid = ObjectId(job.reply_id)
        # Read together: every round trip here is waited for by the visitor (the agent
        # and the budget came with the claim).
        # The reply can be stored already only if an earlier attempt stored it.
        conversation, done, recent = await asyncio.gather(
            self.store.get_conversation(job.company_id, conversation_oid),
            self.store.get_message(job.company_id, conversation_oid, reply_oid)
            if job.attempts > 1
            else _nothing(),
            self.store.list_messages(job.company_id, conversation_oid, limit=HISTORY_MESSAGES),
        )
        agent = job.agent
        if done is not None or not _answerable(conversation, agent):
            async with self._unit(job) as tx:
                await lock_leased(tx.conn, LOCK_LEASED, job.lease)
                tokens = 0
                if done is not None:
                    # Stored by a worker that died before its commit (which would have
                    # published and indexed it): done now, once, since the job ends here.
                    if conversation is not None:
                        await search.index_messages(tx, conversation, [done])
                    service.publish(tx, "message.created", service.message_out(done))
                    tokens = int((done.get("ai_metadata") or {}).get("tokens_used") or 0)
                await tx.conn.execute(DONE, {**job.lease, "tokens": tokens})
            return
        assert conversation is not None  # _answerable says so
        assert agent is not None
        if job.budget_spent:
            async with self._unit(job) as tx:
                await self._hand_off(tx, job, "the monthly token budget is spent")
            return
        question, history = _turn(recent.documents, job.last_message_id)
        # Remembered for this company only: the insights worker embeds the same message.
        embedded = await self.kb.embedder.embed([question], scope=str(job.company_id))
        vector = [float(x) for x in embedded[0]]
        # Still ours, for a whole lease from now, if a third of it has passed since the
        # claim (a model that loaded meanwhile): the model's time is what it covers.
        # Usually it was taken a moment ago: no round trip for it then.
        if time.monotonic() - job.claimed_at > self.settings.reply_lease_s / 3:
            async with self._unit(job) as tx:
                await lock_leased(tx.conn, LOCK_LEASED, job.lease)
                await tx.conn.execute(RENEW, {**job.lease, "lease_s": self.settings.reply_lease_s})
        # The search in one round trip, under the company's row-level security: as its
        # owner, who sees every document of the company and nothing else.
        searcher = (
            Principal.user(job.company_owner_id)
            if job.company_owner_id is not None
            else Principal.service()  # no owner: the statement's company filter alone
        )
        sources = await find_sources_alone(
            self.pool, searcher, job.company_id, self.kb, agent.id, question, vector,
            limit=self.settings.agent_sources,
            min_similarity=self.settings.agent_min_similarity,
            mode=self.settings.agent_search_mode,
        )  # fmt: skip
        # Turns in a row whose search found nothing above the threshold: kept on the
        # conversation (as read at this job's start: no other job of it runs meanwhile)
        # with the reply, not before the model is asked; at the second, people answer.
        before = int(conversation.get("empty_retrievals", 0))
        empty = 0 if sources else before + 1
        if empty >= EMPTY_RETRIEVALS:
            async with self._unit(job) as tx:
                await self._hand_off(tx, job, "the knowledge base had nothing on it twice")
            return
        summary = conversation.get("summary")
        plan = plan_answer(
            self.models, self.settings, agent, question, history, sources,
            summary if isinstance(summary, str) else None,
        )  # fmt: skip
        self._asked.add(job.id)
        text = await self._while_leased(job, self._stream(job, plan))
        kept = {"empty_retrievals": empty} if empty != before else {}
        await self._store(job, conversation_oid, reply_oid, text, kept)

    async def _while_leased(
        self, job: Job, answering: Coroutine[Any, Any, tuple[str, Reply]]
    ) -> tuple[str, Reply]:
        """``answering``'s result, the job's lease renewed every third of it meanwhile
        (however long the answer takes, no other worker takes it over); LeaseLost, and
        the answer stopped, when the job is no longer this worker's (its company purged,
        taken over)."""
        writing = asyncio.ensure_future(answering)
        renewing = asyncio.ensure_future(self._renew_every(job, self.settings.reply_lease_s / 3))
        try:
            await asyncio.wait({writing, renewing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writing, renewing):
                if not task.done():
                    task.cancel()
            await asyncio.gather(writing, renewing, return_exceptions=True)
        lost = renewing.exception() if renewing.done() and not renewing.cancelled() else None
        if lost is not None:
            raise lost
        return writing.result()

    async def _renew_every(self, job: Job, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            async with self._unit(job) as tx:
                await lock_leased(tx.conn, LOCK_LEASED, job.lease)
                await tx.conn.execute(RENEW, {**job.lease, "lease_s": self.settings.reply_lease_s})

    async def _stream(self, job: Job, plan: AnswerPlan) -> tuple[str, Reply]:
        """Ask the model and publish its answer as it grows; the whole text and reply."""
        # Sent while the model is asked (not before: the visitor waits for neither), and
        # awaited before the first delta, which it must precede.
        typing = asyncio.ensure_future(
            self._ephemeral(job, "typing", {"state": "start", "by": "agent"})
        )
        parts: list[str] = []
        pending: list[str] = []
        last_sent = 0.0  # the first piece goes at once: the visitor sees the answer start
        stream = plan.start()
        try:
            async with stream:
                async for delta in stream:
                    parts.append(delta)
                    pending.append(delta)
                    if time.monotonic() - last_sent >= self.settings.reply_delta_interval_s:
                        await typing
                        await self._delta(job, "".join(pending))
                        pending.clear()
                        last_sent = time.monotonic()
            if pending:
                await typing
                await self._delta(job, "".join(pending))
        finally:
            await asyncio.gather(typing, return_exceptions=True)
            await self._ephemeral(job, "typing", {"state": "stop", "by": "agent"})
        text = "".join(parts)
        return text, plan.reply(stream, text, self.settings.llm_prices)

    async def _delta(self, job: Job, delta: str) -> None:
        data = {"message_id": job.reply_id, "conversation_id": job.conversation_id,
                "delta": delta}  # fmt: skip
        await self._ephemeral(job, "message.delta", data)

    async def _ephemeral(self, job: Job, event_type: Any, data: dict[str, Any]) -> None:
        if self.events is None:
            return
        event = Event.new(event_type, job.company_id, job.conversation_id, data)
        try:
            await self.events.publish_ephemeral(event)
        except Exception:  # a live signal lost is no reason to drop the answer
            log.warning("reply %s: a %s event was not published", job.id, event_type)

    async def _store(
        self,
        job: Job,
        conversation_oid: ObjectId,
        reply_oid: ObjectId,
        answered: tuple[str, Reply],
        kept: Document,
    ) -> None:
        """Store the reply whole (``kept``: the agent's own fields of the conversation,
        set with it) and end the job, under its lease."""
        text, reply = answered
        ai_metadata = reply.ai_metadata()
        ai_metadata["response_time_ms"] = round(
            (datetime.now(UTC) - job.first_message_at).total_seconds() * 1000, 1
        )
        document = {
            "_id": reply_oid,
            "sender_type": "agent",
            "role": "assistant",
            "content": text,
            "ai_metadata": ai_metadata,
            "metadata": {"citations": reply.citations()},
        }
        async with self._unit(job) as tx:
            await lock_leased(tx.conn, LOCK_LEASED, job.lease)
            conversation = await self.store.get_conversation(job.company_id, conversation_oid)
            agent = await _agent(tx, job.agent_id)
            if _answerable(conversation, agent):  # else dropped: disabled, handed off, ended
                assert conversation is not None  # _answerable says so
                if text.strip() or reply.handoff is None:
                    try:
                        await service.append_reply(
                            tx, self.store, conversation, document, kept=kept
                        )
                    except DuplicateKeyError:
                        log.info("reply %s was stored by an earlier attempt", job.id)
                if reply.handoff is not None:  # the model's own decision, beside its answer
                    await service.hand_off(
                        tx, self.store, job.conversation_id, "human", service.HANDOFF_LINE,
                        reason=f"the model decided: {reply.handoff.reason}",
                    )  # fmt: skip
            await tx.conn.execute(DONE, {**job.lease, "tokens": reply.usage.total_tokens})

    async def _hand_off(self, tx: TenantTransaction, job: Job, reason: str) -> None:
        """Pass the conversation to people instead of answering; the job is done."""
        await lock_leased(tx.conn, LOCK_LEASED, job.lease)
        await tx.conn.execute(DONE, {**job.lease, "tokens": 0})
        await service.hand_off(
            tx, self.store, job.conversation_id, "human", service.HANDOFF_LINE, reason=reason
        )

    async def _failed(self, job: Job, error: Exception) -> None:
        log.warning("reply %s failed (attempt %s): %r", job.id, job.attempts, error)
        reason = repr(error)[:2000]
        try:
            if job.attempts < self.settings.reply_max_attempts:
                async with self._unit(job) as tx:
                    await lock_leased(tx.conn, LOCK_LEASED, job.lease)
                    delay = min(2**job.attempts, 60)
                    await tx.conn.execute(RETRY, {**job.lease, "error": reason, "delay_s": delay})
                return
            async with self._unit(job) as tx:
                await lock_leased(tx.conn, LOCK_LEASED, job.lease)
                await tx.conn.execute(FAIL, {**job.lease, "error": reason})
                # The visitor is never left waiting for an answer that will not come.
                why = "the model failed" if isinstance(error, ModelError) else "an error"
                with contextlib.suppress(NotFound):  # the conversation is gone: no one waits
                    async with tx.savepoint():
                        await service.hand_off(
                            tx, self.store, job.conversation_id, "human", service.HANDOFF_LINE,
                            reason=why,
                        )  # fmt: skip
        except LeaseLost:
            pass


async def _nothing() -> None:
    return None


async def _agent(tx: TenantTransaction, agent_id: UUID) -> Agent | None:
    try:
        return await read_agent(tx, agent_id)
    except NotFound:
        return None


def _answerable(conversation: Document | None, agent: Agent | None) -> bool:
    """Whether the agent still answers here: enabled, the chat active and its own."""
    return (
        conversation is not None
        and agent is not None
        and bool(agent.enabled)
        and conversation.get("status") == "active"
        and conversation.get("handled_by", "agent") == "agent"
    )


def _turn(newest_first: list[Document], last_message_id: str) -> tuple[str, list[ChatMessage]]:
    """The visitor's turn (their messages since the last answer, up to the job's newest
    one) as the question, and the conversation before it, oldest first."""
    messages = list(reversed(newest_first))
    ids = [str(m["_id"]) for m in messages]
    end = ids.index(last_message_id) + 1 if last_message_id in ids else len(messages)
    messages = messages[:end]
    start = end
    while start > 0 and messages[start - 1]["sender_type"] == "user":
        start -= 1
    question = "\n".join(m["content"] for m in messages[start:end]) or ""
    history: list[ChatMessage] = [
        {"role": "user" if m["sender_type"] == "user" else "assistant", "content": m["content"]}
        for m in messages[:start]
        if m["sender_type"] in ("user", "agent")
    ]
    return question, history
