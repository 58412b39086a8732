"""Conversations and messages in MongoDB, one company at a time.

MongoDB cannot enforce tenancy, so this module does, in one place: every function takes
the company first, and every filter, update and aggregation ``$match`` is built by
``scoped()``, which puts ``company_id`` first (after the ``_id`` of one document, if the
filter names one). Tests watch every command sent to these collections and fail on one
whose filter does not lead with ``company_id``.

Ids: documents use MongoDB ObjectIds; company, agent, contact and user ids are the
PostgreSQL UUIDs as strings. Times are UTC, at MongoDB's millisecond precision.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from syntera.conversations import figures
from syntera.db.mongo import Document, IndexSpec, MongoDatabase, delete_and_read, update_and_read
from syntera.db.storable import storable

CONVERSATIONS = "conversations"
MESSAGES = "messages"
# The team's private notes on a conversation: beside the conversation, so they live and
# leave with it (a contact's erasure and a company's purge reach them in the same step).
NOTES = "conversation_notes"
PREVIEW_CHARS = 140
# The inbox's list reads back in time windows (``ConversationStore._by_activity``).
ACTIVITY_WINDOW = timedelta(seconds=4)
ACTIVITY_UNBOUNDED = timedelta(days=365 * 20)
# How many first pages (a company's list, by filter) remember where they ended.
ACTIVITY_HINTS = 10_000
# The hint of a list shorter than a page: all of it is read at once.
WHOLE_LIST = datetime.min.replace(tzinfo=UTC)

Direction = Literal["backward", "forward"]


# Shard keys for a sharded MongoDB (``syntera db shard-plan`` prints the commands). Both
# lead with the tenant, so every query of this store, which starts its filter with
# ``company_id`` (``scoped``), goes to the shards holding that company's range and never
# to all of them. Messages add the conversation, which every message query but the
# company-wide statistics names too: a large company's messages spread over shards by
# conversation, while one conversation's history stays together (its pages are one
# chunk's range). Ranged, not hashed: ranges keep a tenant together and allow zones
# (a large tenant pinned to its own shards). Each key is the prefix of an index below,
# as sharding requires.
SHARD_KEYS: dict[str, list[tuple[str, int]]] = {
    "conversations": [("company_id", 1), ("_id", 1)],
    "messages": [("company_id", 1), ("conversation_id", 1)],
    "conversation_notes": [("company_id", 1), ("conversation_id", 1)],
}


def scoped(company_id: UUID, **conditions: Any) -> Document:
    """The filter of one company's documents: ``company_id`` and ``conditions``.

    A document named by ``_id`` has it first: SecantusDB plans a filter its indexes do
    not cover from its first clause that one does, and ``company_id`` there would read
    all of the company's documents. MongoDB minds no order."""
    if "_id" in conditions:
        return {"_id": conditions.pop("_id"), "company_id": str(company_id), **conditions}
    return {"company_id": str(company_id), **conditions}


def now() -> datetime:
    """The current time at MongoDB's precision (milliseconds), so stored equals returned."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def indexes(message_retention_days: int | None = None) -> list[IndexSpec]:
    """The seed's indexes, each led by company_id (the tenant-leading variants), plus
    what the API's lists and the retention policy need."""
    specs = [
        # The seed's conversation indexes.
        IndexSpec(CONVERSATIONS, "company_status_started",
                  [("company_id", 1), ("status", 1), ("started_at", -1)]),
        IndexSpec(CONVERSATIONS, "company_channel_started",
                  [("company_id", 1), ("channel", 1), ("started_at", -1)]),
        IndexSpec(CONVERSATIONS, "company_agent_status_started",
                  [("company_id", 1), ("agent_id", 1), ("status", 1), ("started_at", -1)]),
        IndexSpec(CONVERSATIONS, "company_contact_started",
                  [("company_id", 1), ("contact_id", 1), ("started_at", -1)]),
        # One conversation by id: SecantusDB plans `{company_id, _id}` as a full scan
        # rather than use the _id index; this index serves it on both servers.
        IndexSpec(CONVERSATIONS, "company_id_id", [("company_id", 1), ("_id", 1)]),
        # The unfiltered list and the tag filter, paged by (started_at, _id).
        IndexSpec(CONVERSATIONS, "company_started",
                  [("company_id", 1), ("started_at", -1), ("_id", -1)]),
        IndexSpec(CONVERSATIONS, "company_tags_started",
                  [("company_id", 1), ("tags", 1), ("started_at", -1)]),
        # The seed's message indexes; thread_id is optional, so its index is sparse.
        IndexSpec(MESSAGES, "company_conversation_created",
                  [("company_id", 1), ("conversation_id", 1), ("created_at", 1), ("_id", 1)]),
        IndexSpec(MESSAGES, "company_conversation_sender_created",
                  [("company_id", 1), ("conversation_id", 1), ("sender_type", 1),
                   ("created_at", -1)]),
        IndexSpec(MESSAGES, "company_conversation_thread_created",
                  [("company_id", 1), ("conversation_id", 1), ("thread_id", 1),
                   ("created_at", 1)], {"sparse": True}),
        IndexSpec(MESSAGES, "company_model_created",
                  [("company_id", 1), ("ai_metadata.model", 1), ("created_at", -1)]),
        # Message statistics since a date.
        IndexSpec(MESSAGES, "company_created", [("company_id", 1), ("created_at", -1)]),
        # The inbox: newest activity first, unfiltered and by each of its filters.
        IndexSpec(CONVERSATIONS, "company_activity",
                  [("company_id", 1), ("last_activity_at", -1), ("_id", -1)]),
        IndexSpec(CONVERSATIONS, "company_status_activity",
                  [("company_id", 1), ("status", 1), ("last_activity_at", -1), ("_id", -1)]),
        IndexSpec(CONVERSATIONS, "company_assignee_activity",
                  [("company_id", 1), ("assignee_id", 1), ("last_activity_at", -1),
                   ("_id", -1)]),
        IndexSpec(CONVERSATIONS, "company_handled_assignee_activity",
                  [("company_id", 1), ("handled_by", 1), ("assignee_id", 1),
                   ("last_activity_at", -1), ("_id", -1)]),
        IndexSpec(CONVERSATIONS, "company_agent_activity",
                  [("company_id", 1), ("agent_id", 1), ("last_activity_at", -1), ("_id", -1)]),
        IndexSpec(CONVERSATIONS, "company_channel_activity",
                  [("company_id", 1), ("channel", 1), ("last_activity_at", -1), ("_id", -1)]),
        IndexSpec(CONVERSATIONS, "company_tags_activity",
                  [("company_id", 1), ("tags", 1), ("last_activity_at", -1), ("_id", -1)]),
        # A member's open conversations (who gets the next hand-off).
        IndexSpec(CONVERSATIONS, "company_assignee_status",
                  [("company_id", 1), ("assignee_id", 1), ("status", 1)]),
        IndexSpec(NOTES, "company_conversation_created",
                  [("company_id", 1), ("conversation_id", 1), ("created_at", 1), ("_id", 1)]),
    ]  # fmt: skip
    if message_retention_days is not None:
        specs.append(
            IndexSpec(MESSAGES, "retention", [("created_at", 1)],
                      {"expireAfterSeconds": message_retention_days * 86_400})
        )  # fmt: skip
    return specs


def preview(message: Document) -> Document:
    """What the inbox shows of a conversation's newest message."""
    return {
        "id": str(message["_id"]),
        "content_preview": message["content"][:PREVIEW_CHARS],
        "sender_type": message["sender_type"],
        "sender_id": message.get("sender_id"),
        "created_at": message["created_at"],
    }


async def fill_inbox_fields(db: MongoDatabase, batch: int = 500) -> int:
    """Give conversations stored before the inbox's fields existed their last activity,
    last message and message count, so the inbox lists them; how many were filled.

    Run by ``syntera migrate`` (safe to rerun: only documents without
    ``last_activity_at`` are read). It looks across companies on purpose, to find them;
    every per-conversation read and write then names its company first."""
    conversations, messages = db[CONVERSATIONS], db[MESSAGES]
    filled = 0
    while True:
        legacy = (
            await conversations.find(
                {"last_activity_at": {"$exists": False}},
                {
                    "company_id": 1,
                    "started_at": 1,
                    "created_at": 1,
                    "assignee_id": 1,
                    "reads": 1,
                    "rating": 1,
                },
            )
            .limit(batch)
            .to_list()
        )
        for document in legacy:
            company = UUID(document["company_id"])
            history = scoped(company, conversation_id=str(document["_id"]))
            newest = await messages.find(history).sort("created_at", DESCENDING).limit(1).to_list()
            count = await messages.count_documents(history)
            since = document.get("started_at") or document.get("created_at") or now()
            fields: Document = {
                "last_activity_at": newest[0]["created_at"] if newest else since,
                "last_message": preview(newest[0]) if newest else None,
                "message_count": count,
            }
            for field, empty in (("assignee_id", None), ("reads", {}), ("rating", None)):
                if field not in document:
                    fields[field] = empty
            await conversations.update_one(
                scoped(company, _id=document["_id"], last_activity_at={"$exists": False}),
                {"$set": fields},
            )
            filled += 1
        if len(legacy) < batch:
            return filled


@dataclass(frozen=True)
class Slice:
    """Documents of one page and whether more follow."""

    documents: list[Document]
    has_more: bool


async def _page(
    collection: AsyncCollection[Document],
    query: Document,
    time_field: str,
    after: tuple[datetime, ObjectId] | None,
    direction: Direction,
    limit: int,
) -> Slice:
    """One keyset page of ``query`` ordered by (``time_field``, _id).

    After a cursor (time t, id i) the page is: the rows at exactly t with an id beyond i,
    then the rows beyond t. Two simple range queries rather than one ``$or``: each is an
    index range on any MongoDB, where SecantusDB answers an ``$or`` with a full scan.
    """
    order = DESCENDING if direction == "backward" else ASCENDING
    beyond = "$lt" if direction == "backward" else "$gt"
    wanted = limit + 1  # one more than asked tells whether there is a next page
    documents: list[Document] = []
    if after is not None:
        at, last_id = after
        ties = collection.find({**query, time_field: at, "_id": {beyond: last_id}})
        documents = await ties.sort([("_id", order)]).limit(wanted).to_list()
        query = {**query, time_field: {beyond: at}}
    if len(documents) < wanted:
        rest = collection.find(query).sort([(time_field, order), ("_id", order)])
        documents += await rest.limit(wanted - len(documents)).to_list()
    return Slice(documents[:limit], len(documents) > limit)


def _next_span(span: timedelta, found: int, missing: int) -> timedelta:
    """The next window of the activity list: as long as the last one's density says the
    missing conversations need, and half again (at most 16 times longer); 8 times longer
    after an empty one.

    Four times, not more, after an empty window: the window that first reaches the
    conversations again reaches past the newest of them by up to three times the empty
    stretch, and SecantusDB reads every conversation of a window (a 34-minute window of
    a company busy once a second took 1.2 s)."""
    if found == 0:
        return span * 4
    return span * min(16.0, max(1.0, 1.5 * missing / found))


class ConversationStore:
    """Every operation on conversations and messages, scoped to one company."""

    def __init__(self, db: MongoDatabase) -> None:
        self.database = db  # for stores beside this one (syntera.insights.store)
        self._conversations = db[CONVERSATIONS]
        self._messages = db[MESSAGES]
        self._notes = db[NOTES]
        # Where each list's first page last ended (``_by_activity``), newest use last.
        self._activity_hints: OrderedDict[tuple[Any, ...], datetime] = OrderedDict()

    async def purge_company(self, company_id: UUID) -> tuple[int, int]:
        """Delete every conversation and message of a (deleted) company: (conversations,
        messages) removed. Messages first, so a purge interrupted between the two leaves
        no message whose conversation is gone."""
        messages = await self._messages.delete_many(scoped(company_id))
        await self._notes.delete_many(scoped(company_id))
        conversations = await self._conversations.delete_many(scoped(company_id))
        return conversations.deleted_count, messages.deleted_count

    async def purge_contact(self, company_id: UUID, contact_id: UUID) -> tuple[list[ObjectId], int]:
        """Delete an erased contact's conversations and their messages: the ids of the
        conversations deleted (so that their cached copies go too) and the messages
        deleted. Messages first, as for a company."""
        ids = [
            document["_id"]
            async for document in self._conversations.find(
                scoped(company_id, contact_id=str(contact_id)), {"_id": 1}
            )
        ]
        if not ids:
            return [], 0
        texts = [str(oid) for oid in ids]
        messages = await self._messages.delete_many(
            scoped(company_id, conversation_id={"$in": texts})
        )
        await self._notes.delete_many(scoped(company_id, conversation_id={"$in": texts}))
        await self._conversations.delete_many(scoped(company_id, _id={"$in": ids}))
        return ids, messages.deleted_count

    async def conversations_of_contact(
        self, company_id: UUID, contact_id: UUID
    ) -> AsyncIterator[Document]:
        """A contact's conversations, oldest first (for an export)."""
        cursor = self._conversations.find(scoped(company_id, contact_id=str(contact_id)))
        async for document in cursor.sort([("started_at", 1), ("_id", 1)]):
            yield document

    async def all_messages(
        self, company_id: UUID, conversation_id: ObjectId
    ) -> AsyncIterator[Document]:
        """Every message of a conversation, oldest first, read in batches (for an export)."""
        cursor = self._messages.find(scoped(company_id, conversation_id=str(conversation_id)))
        async for document in cursor.sort([("created_at", 1), ("_id", 1)]).batch_size(1000):
            yield document

    async def count_messages(self, company_id: UUID) -> int:
        """How many messages the company has (a rebuild's total)."""
        return await self._messages.count_documents(scoped(company_id))

    async def conversation_headers(self, company_id: UUID) -> AsyncIterator[Document]:
        """Every conversation of the company: its id, agent, contact and channel."""
        fields = {"agent_id": 1, "contact_id": 1, "channel": 1}
        async for document in self._conversations.find(scoped(company_id), fields):
            yield document

    # Conversations -----------------------------------------------------------------------

    async def start(
        self,
        company_id: UUID,
        *,
        agent_id: UUID,
        channel: str,
        contact_id: UUID | None = None,
        user_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: Document | None = None,
        conversation_id: ObjectId | None = None,
    ) -> Document:
        """A new, active conversation (with ``conversation_id`` when the caller chose it)."""
        moment = now()
        document = scoped(
            company_id,
            _id=conversation_id or ObjectId(),
            agent_id=str(agent_id),
            contact_id=str(contact_id) if contact_id else None,
            user_id=str(user_id) if user_id else None,
            channel=channel,
            status="active",
            started_at=moment,
            ended_at=None,
            tags=storable("tags", tags or []),
            threads=[],
            summary=None,
            summary_updated_at=None,
            metadata=storable("metadata", metadata or {}),
            assignee_id=None,
            last_message=None,
            last_activity_at=moment,
            message_count=0,
            reads={},
            rating=None,
            handoff_count=0,
            handed_off_at=None,
            figures=figures.empty(),
            created_at=moment,
            updated_at=moment,
        )
        await self._conversations.insert_one(document)
        return document

    async def get_conversation(
        self, company_id: UUID, conversation_id: ObjectId
    ) -> Document | None:
        """The conversation, archived or not; None if it is not this company's."""
        return await self._conversations.find_one(scoped(company_id, _id=conversation_id))

    async def end(self, company_id: UUID, conversation_id: ObjectId) -> Document | None:
        """End an active conversation (sets ended_at); an ended one is returned as it is."""
        moment = now()
        ended = await update_and_read(
            self._conversations,
            scoped(company_id, _id=conversation_id, status="active"),
            {"$set": {"status": "ended", "ended_at": moment, "updated_at": moment}},
        )
        return ended or await self.get_conversation(company_id, conversation_id)

    async def archive(self, company_id: UUID, conversation_id: ObjectId) -> Document | None:
        """Hide the conversation from lists (the seed archives, never deletes); an active
        one is ended at the same time."""
        moment = now()
        conversation = await self.get_conversation(company_id, conversation_id)
        if conversation is None:
            return None
        changes: Document = {"status": "archived", "updated_at": moment}
        if conversation.get("ended_at") is None:
            changes["ended_at"] = moment
        return await self._set(company_id, conversation_id, changes)

    async def update(
        self, company_id: UUID, conversation_id: ObjectId, changes: Document
    ) -> Document | None:
        """Change contact, tags, metadata or summary (the summary's time is kept)."""
        for field, value in changes.items():
            storable(field, value)
        moment = now()
        changes = {**changes, "updated_at": moment}
        if "summary" in changes:
            changes["summary_updated_at"] = moment
        return await self._set(company_id, conversation_id, changes)

    async def _set(
        self, company_id: UUID, conversation_id: ObjectId, changes: Document
    ) -> Document | None:
        """Set ``changes`` on the company's conversation; the conversation after, or None."""
        return await update_and_read(
            self._conversations,
            scoped(company_id, _id=conversation_id),
            {"$set": changes},
        )

    async def list_conversations(
        self,
        company_id: UUID,
        *,
        status: str | None = None,
        channel: str | None = None,
        agent_id: UUID | None = None,
        contact_id: UUID | None = None,
        tag: str | None = None,
        assignee: UUID | Literal["any"] | None = "any",
        handled_by: str | None = None,
        include_archived: bool = False,
        limit: int = 20,
        after: tuple[datetime, ObjectId] | None = None,
    ) -> Slice:
        """Newest activity first (a new message moves a conversation to the top);
        archived ones only when asked for (or by status). ``assignee``: a member's, None
        for the unassigned, "any" for all."""
        conditions: Document = {}
        if assignee != "any":
            conditions["assignee_id"] = str(assignee) if assignee is not None else None
        if handled_by is not None:
            conditions["handled_by"] = handled_by
        if agent_id is not None:
            conditions["agent_id"] = str(agent_id)
        if contact_id is not None:
            conditions["contact_id"] = str(contact_id)
        if channel is not None:
            conditions["channel"] = channel
        if tag is not None:
            conditions["tags"] = tag
        if status is not None:
            conditions["status"] = status
        query = scoped(company_id, **conditions)
        skip_archived = status is None and not include_archived
        return await self._by_activity(query, after, limit, skip_archived)

    async def _by_activity(
        self,
        query: Document,
        after: tuple[datetime, ObjectId] | None,
        limit: int,
        skip_archived: bool,
    ) -> Slice:
        """One keyset page of ``query``, newest activity first, read in time windows.

        SecantusDB (the embedded default) never reads an index in order for a sort: it
        fetches every match and sorts it, so a plain sorted page costs the company's whole
        inbox (3 s at 10,000 conversations). It does use an index's range on
        ``last_activity_at``, so the page is read window by window back from the cursor
        (4 s first, each next one as long as the last one's density says is missing:
        ``_next_span``; unbounded past 20 years), each an index range of few documents;
        on MongoDB each is an index range too. Archived conversations are dropped here
        rather than by ``$ne``, which SecantusDB answers with a collection scan.

        What a window costs on SecantusDB is the conversations in it (each is read,
        matched and sorted before the limit: py-spy), so a first page remembers where the
        list's last first page ended (``_remember_activity``) and starts with that one
        window: at 100,000 conversations the walk from now reached 2,000 of them in one
        window (1.2 s) once the newest activity was minutes old.
        """
        wanted = limit + 1
        found: list[Document] = []
        order = [("last_activity_at", DESCENDING), ("_id", DESCENDING)]
        # Everything next is before (at, last_id) in (time, id) order; id None: before at.
        at, last_id = after if after is not None else (None, None)
        span = ACTIVITY_WINDOW
        key = (tuple(query.items()), skip_archived, limit)
        since = self._activity_hints.get(key) if after is None else None
        ended = False
        if since is not None:
            # The first page is everything active since this list's last first page
            # ended: that page again, and whatever moved into it since.
            hinted = (
                query if since == WHOLE_LIST else {**query, "last_activity_at": {"$gte": since}}
            )
            documents = await self._conversations.find(hinted).sort(order).limit(wanted).to_list()
            found += [d for d in documents if not (skip_archived and d["status"] == "archived")]
            if len(documents) == wanted:
                at, last_id = documents[-1]["last_activity_at"], documents[-1]["_id"]
            else:
                at, last_id = since, None
                ended = since == WHOLE_LIST
        while not ended and len(found) < wanted:
            needed = wanted - len(found)
            if at is not None and last_id is not None:
                ties = (
                    await self._conversations.find(
                        {**query, "last_activity_at": at, "_id": {"$lt": last_id}}
                    )
                    .sort([("_id", DESCENDING)])
                    .limit(needed)
                    .to_list()
                )
                found += [d for d in ties if not (skip_archived and d["status"] == "archived")]
                if len(ties) == needed:
                    at, last_id = ties[-1]["last_activity_at"], ties[-1]["_id"]
                    continue
                last_id = None
                continue
            top = at if at is not None else now()
            # A window reaching before year 1 (a cursor from long ago) reads unbounded.
            reachable = top - datetime.min.replace(tzinfo=top.tzinfo)
            lower = top - span if span < min(ACTIVITY_UNBOUNDED, reachable) else None
            window: Document = {}
            if at is not None:
                window["$lt"] = at
            if lower is not None:
                window["$gte"] = lower
            documents = (
                await self._conversations.find(
                    {**query, "last_activity_at": window} if window else query
                )
                .sort(order)
                .limit(needed)
                .to_list()
            )
            found += [d for d in documents if not (skip_archived and d["status"] == "archived")]
            if len(documents) == needed:  # the window may hold more: go on inside it
                at, last_id = documents[-1]["last_activity_at"], documents[-1]["_id"]
                continue
            if lower is None:  # nothing older is left
                break
            at, last_id = lower, None
            span = _next_span(span, len(documents), needed - len(documents))
        if after is None:
            # Fewer than a page and one more: the walk reached the list's end.
            end = found[-1]["last_activity_at"] if len(found) >= wanted else WHOLE_LIST
            self._remember_activity(key, end)
        return Slice(found[:limit], len(found) > limit)

    def _remember_activity(self, key: tuple[Any, ...], since: datetime) -> None:
        """Remember where a list's first page ended (a full page and one more; WHOLE_LIST
        for a shorter list): the next first page of the list starts with that one
        window. A hint, never the answer: a conversation that left the range since only
        makes the walk go on below it; one that moved into it is inside the window. Kept
        per process, the least recently used forgotten first."""
        self._activity_hints[key] = since
        self._activity_hints.move_to_end(key)
        while len(self._activity_hints) > ACTIVITY_HINTS:
            self._activity_hints.popitem(last=False)

    # Hand-offs and the report's figures ---------------------------------------------------

    async def hand_to(
        self, company_id: UUID, conversation_id: ObjectId, to: Literal["agent", "human"]
    ) -> Document | None:
        """Put the conversation in the agent's or people's hands; a hand-off to people
        is counted (``handoff_count``) and the first one's time kept (``handed_off_at``),
        since ``handled_by`` alone forgets a hand-off once the agent has it back."""
        moment = now()
        update: Document = {"$set": {"handled_by": to, "updated_at": moment}}
        if to == "human":
            update["$inc"] = {"handoff_count": 1}
        changed = await update_and_read(
            self._conversations, scoped(company_id, _id=conversation_id), update
        )
        if to == "human" and changed is not None and changed.get("handed_off_at") is None:
            # The first hand-off's time, once (a concurrent first hand-off keeps its own).
            changed = await update_and_read(
                self._conversations,
                scoped(company_id, _id=conversation_id, handed_off_at=None),
                {"$set": {"handed_off_at": moment}},
            ) or await self.get_conversation(company_id, conversation_id)
        return changed

    async def note_sentiment(
        self,
        company_id: UUID,
        conversation_id: ObjectId,
        at: datetime,
        score: float,
        known: Document | None = None,
    ) -> None:
        """A visitor's message written at ``at`` was classified with ``score``: it is
        the conversation's starting sentiment if no earlier message's is known, its
        ending one if no later message's is. ``known``: the conversation's figures as
        read a moment ago, which spare the writes they show are not needed (a start only
        moves earlier, an end later); each write still checks its own condition."""
        value = {"at": at, "score": score}
        complete = {f"{figures.FIGURES}.complete": True}
        if known is not None and not known.get("complete"):
            return
        for key, later in (("sentiment_start", "$gt"), ("sentiment_end", "$lt")):
            field = f"{figures.FIGURES}.{key}"
            # Two writes rather than one with $or: SecantusDB plans no index for a filter
            # holding an operator at its top and would read every conversation.
            conditions: list[Document] = [{field: None}, {f"{field}.at": {later: at}}]
            current = None if known is None else known.get(key)
            if current is not None:  # it is set, and stays set: only the time decides
                if not ((current["at"] > at) if later == "$gt" else (current["at"] < at)):
                    continue
                conditions = conditions[1:]
            for condition in conditions:
                result = await self._conversations.update_one(
                    scoped(company_id, _id=conversation_id, **complete, **condition),
                    {"$set": {field: value}},
                )
                if result.matched_count:
                    break

    # Assignment and rating ---------------------------------------------------------------

    async def assign(
        self, company_id: UUID, conversation_id: ObjectId, assignee_id: UUID | None
    ) -> Document | None:
        """Set (or clear, with None) the conversation's assignee; the conversation after."""
        return await self._set(
            company_id,
            conversation_id,
            {"assignee_id": str(assignee_id) if assignee_id else None, "updated_at": now()},
        )

    async def assign_if_unassigned(
        self, company_id: UUID, conversation_id: ObjectId, assignee_id: UUID
    ) -> Document | None:
        """Assign the conversation unless someone already has it (a member who took it
        meanwhile keeps it); the conversation after, or None if it was taken."""
        after = await update_and_read(
            self._conversations,
            scoped(company_id, _id=conversation_id, assignee_id=None),
            {"$set": {"assignee_id": str(assignee_id), "updated_at": now()}},
        )
        # Someone assigned it in the moment since (update_and_read's read may see that).
        if after is not None and after.get("assignee_id") != str(assignee_id):
            return None
        return after

    async def release(self, company_id: UUID, user_id: UUID) -> AsyncIterator[Document]:
        """Unassign the member's active conversations (they left the company), yielding
        each as it is after (the caller sees every one released before a failure). Each
        is cleared only if it is still theirs."""
        theirs = scoped(company_id, assignee_id=str(user_id), status="active")
        ids = [d["_id"] for d in await self._conversations.find(theirs, {"_id": 1}).to_list()]
        for oid in ids:
            after = await update_and_read(
                self._conversations,
                scoped(company_id, _id=oid, assignee_id=str(user_id)),
                {"$set": {"assignee_id": None, "updated_at": now()}},
            )
            if after is not None:
                yield after

    async def give_back(self, company_id: UUID, conversation_id: ObjectId, user_id: UUID) -> None:
        """Assign a conversation ``release`` freed back to the member (the release's
        transaction did not commit), unless someone has taken it since."""
        await self._conversations.update_one(
            scoped(company_id, _id=conversation_id, assignee_id=None),
            {"$set": {"assignee_id": str(user_id)}},
        )

    async def open_conversations_of(
        self, company_id: UUID, user_ids: list[UUID]
    ) -> dict[UUID, int]:
        """How many active conversations each of these members is assigned: one indexed
        count per member (an ``$in`` would make SecantusDB scan the company's)."""
        counts = {}
        for user_id in user_ids:
            counts[user_id] = await self._conversations.count_documents(
                scoped(company_id, assignee_id=str(user_id), status="active")
            )
        return counts

    async def rate(
        self, company_id: UUID, conversation_id: ObjectId, rating: Document
    ) -> Document | None:
        """Store the visitor's rating of an ended conversation (a later one replaces
        it); None if the conversation is not ended (or not there)."""
        return await update_and_read(
            self._conversations,
            scoped(company_id, _id=conversation_id, status={"$in": ["ended", "archived"]}),
            {"$set": {"rating": storable("rating", rating)}},
        )

    # Read positions ----------------------------------------------------------------------

    async def read_up_to(
        self, company_id: UUID, conversation_id: ObjectId, user_id: UUID, count: int
    ) -> None:
        """The member has read the conversation's first ``count`` messages (a position
        never moves back). Positions live on the conversation (``reads``, one entry per
        member who read it: bounded by the team), so the inbox's unread counts come with
        the page that lists them, and leave with the conversation."""
        await self._conversations.update_one(
            scoped(company_id, _id=conversation_id), {"$max": {f"reads.{user_id}": count}}
        )

    async def position_of(
        self, company_id: UUID, conversation_id: ObjectId, message: Document
    ) -> int:
        """How many messages of the conversation come up to and including ``message``
        (by time, then id: messages of one batch share their time)."""
        query = scoped(company_id, conversation_id=str(conversation_id))
        before = await self._messages.count_documents(
            {**query, "created_at": {"$lt": message["created_at"]}}
        )
        ties = await self._messages.count_documents(
            {**query, "created_at": message["created_at"], "_id": {"$lte": message["_id"]}}
        )
        return before + ties

    # Notes -------------------------------------------------------------------------------

    async def add_note(
        self, company_id: UUID, conversation_id: ObjectId, author_id: UUID | None, body: str
    ) -> Document:
        """A private note of the team on the conversation."""
        document = scoped(
            company_id,
            conversation_id=str(conversation_id),
            _id=ObjectId(),
            author_id=str(author_id) if author_id else None,
            body=body,
            created_at=now(),
        )
        await self._notes.insert_one(document)
        return document

    async def list_notes(
        self,
        company_id: UUID,
        conversation_id: ObjectId,
        *,
        limit: int = 50,
        after: tuple[datetime, ObjectId] | None = None,
    ) -> Slice:
        """The conversation's notes, oldest first."""
        query = scoped(company_id, conversation_id=str(conversation_id))
        return await _page(self._notes, query, "created_at", after, "forward", limit)

    async def delete_note(
        self, company_id: UUID, conversation_id: ObjectId, note_id: ObjectId
    ) -> Document | None:
        """Delete a note; the note as it was, or None."""
        return await delete_and_read(
            self._notes, scoped(company_id, conversation_id=str(conversation_id), _id=note_id)
        )

    # Threads -----------------------------------------------------------------------------

    async def add_thread(
        self, company_id: UUID, conversation_id: ObjectId, title: str
    ) -> Document | None:
        """A new thread of the conversation; None if there is no such conversation."""
        thread = {
            "id": secrets.token_hex(8),
            "title": title,
            "created_at": now(),
            "message_count": 0,
        }
        result = await self._conversations.update_one(
            scoped(company_id, _id=conversation_id),
            {"$push": {"threads": thread}, "$set": {"updated_at": thread["created_at"]}},
        )
        return thread if result.matched_count else None

    async def rename_thread(
        self, company_id: UUID, conversation_id: ObjectId, thread_id: str, title: str
    ) -> Document | None:
        """The renamed thread; None if the conversation or the thread does not exist."""
        # arrayFilters rather than the positional `$`: SecantusDB rejects `$` in
        # findAndModify (DESIGN.md); both forms are valid on MongoDB.
        conversation = await update_and_read(
            self._conversations,
            scoped(company_id, _id=conversation_id, **{"threads.id": thread_id}),
            {"$set": {"threads.$[thread].title": title, "updated_at": now()}},
            array_filters=[{"thread.id": thread_id}],
        )
        if conversation is None:
            return None
        thread: Document = next(t for t in conversation["threads"] if t["id"] == thread_id)
        return thread

    # Messages ----------------------------------------------------------------------------

    def _message(
        self, company_id: UUID, conversation_id: ObjectId, values: Document, at: datetime
    ) -> Document:
        for field in ("content", "attachments", "ai_metadata", "metadata"):
            storable(field, values.get(field))
        metadata = dict(values.get("metadata") or {})
        metadata.setdefault("reactions", [])
        return scoped(
            company_id,
            _id=values.get("_id") or ObjectId(),
            conversation_id=str(conversation_id),
            thread_id=values.get("thread_id"),
            sender_type=values["sender_type"],
            role=values["role"],
            content=values["content"],
            message_type=values.get("message_type", "text"),
            attachments=values.get("attachments") or [],
            ai_metadata=values.get("ai_metadata"),
            metadata=metadata,
            sender_id=values.get("sender_id"),
            read_by=[],
            created_at=at,
        )

    async def append(
        self,
        company_id: UUID,
        conversation_id: ObjectId,
        messages: list[Document],
        *,
        reader: UUID | None = None,
        known: Document | None = None,
        kept: Document | None = None,
    ) -> list[Document]:
        """Store messages of a conversation (one insert, or one bulk insert for many),
        count them in their threads, and make the newest the conversation's last message.
        ``reader``: the member who wrote them, who has read the conversation up to them.
        ``known``: the conversation's figures as the caller read them (which spare the
        first answer's write once it is set); ``kept``: other fields of the conversation
        set in the same write. The caller has checked the conversation exists."""
        at = now()
        documents = [self._message(company_id, conversation_id, m, at) for m in messages]
        if len(documents) == 1:
            await self._messages.insert_one(documents[0])
        else:
            # Ordered: a failure stops at the first bad document, and what was acknowledged
            # is exactly what was stored.
            await self._messages.insert_many(documents, ordered=True)
        await self._count_in_threads(company_id, conversation_id, documents, 1)
        # The inbox's preview, order and unread counts, kept with the messages.
        # The report's figures (syntera.conversations.figures) in the same update.
        update = figures.on_append(documents, at)
        update["$inc"]["message_count"] = len(documents)
        update["$set"] = {**(kept or {}), "last_message": preview(documents[-1]),
                          "last_activity_at": at}  # fmt: skip
        await self._conversations.update_one(scoped(company_id, _id=conversation_id), update)
        answer = figures.first_answer(documents, at, known)
        if answer is not None:
            condition, change = answer
            await self._conversations.update_one(
                scoped(company_id, _id=conversation_id, **condition), change
            )
        if reader is not None:
            # Up to the writer's own last message, counted: a message another wrote
            # meanwhile (stored after it) stays unread.
            position = await self.position_of(company_id, conversation_id, documents[-1])
            await self.read_up_to(company_id, conversation_id, reader, position)
        return documents

    async def put_back(self, company_id: UUID, conversation_id: ObjectId, fields: Document) -> None:
        """Set the conversation's ``fields`` back as they were read (None: absent), after
        a write of them whose transaction did not commit."""
        update: Document = {}
        present = {field: value for field, value in fields.items() if value is not None}
        if present:
            update["$set"] = present
        absent = {field: "" for field, value in fields.items() if value is None}
        if absent:
            update["$unset"] = absent
        if update:
            await self._conversations.update_one(scoped(company_id, _id=conversation_id), update)

    async def _count_in_threads(
        self, company_id: UUID, conversation_id: ObjectId, documents: list[Document], sign: int
    ) -> None:
        """Add (``sign`` 1) or take (-1) the messages to or from their threads' counts."""
        per_thread: dict[str, int] = {}
        for document in documents:
            if document["thread_id"] is not None:
                per_thread[document["thread_id"]] = per_thread.get(document["thread_id"], 0) + 1
        for thread_id, count in per_thread.items():
            await self._conversations.update_one(
                scoped(company_id, _id=conversation_id),
                {"$inc": {"threads.$[thread].message_count": sign * count}},
                array_filters=[{"thread.id": thread_id}],
            )  # $inc is atomic: concurrent appends never lose a count

    async def remove(
        self, company_id: UUID, conversation_id: ObjectId, documents: list[Document]
    ) -> None:
        """Take back messages ``append`` stored (the request that stored them failed):
        the messages, and their counts in their threads."""
        await self._messages.delete_many(
            scoped(
                company_id,
                conversation_id=str(conversation_id),
                _id={"$in": [document["_id"] for document in documents]},
            )
        )
        await self._count_in_threads(company_id, conversation_id, documents, -1)
        tokens, cost = figures.spent(documents)
        await self._conversations.update_one(
            scoped(company_id, _id=conversation_id),
            {"$inc": {"message_count": -len(documents), "figures.tokens": -tokens,
                      "figures.cost": -cost}},
        )  # fmt: skip

    async def get_message(
        self, company_id: UUID, conversation_id: ObjectId, message_id: ObjectId
    ) -> Document | None:
        """One message of the conversation; None if it is not there."""
        return await self._messages.find_one(
            scoped(company_id, conversation_id=str(conversation_id), _id=message_id)
        )

    async def list_messages(
        self,
        company_id: UUID,
        conversation_id: ObjectId,
        *,
        thread_id: str | None = None,
        limit: int = 50,
        after: tuple[datetime, ObjectId] | None = None,
        direction: Direction = "backward",
    ) -> Slice:
        """A page of the conversation's messages: ``backward`` is newest first (paging to
        older ones), ``forward`` oldest first; ``after`` is the last message seen."""
        conditions: Document = {"conversation_id": str(conversation_id)}
        if thread_id is not None:
            conditions["thread_id"] = thread_id
        query = scoped(company_id, **conditions)
        return await _page(self._messages, query, "created_at", after, direction, limit)

    async def react(
        self,
        company_id: UUID,
        conversation_id: ObjectId,
        message_id: ObjectId,
        emoji: str,
        user_id: UUID | None,
    ) -> Document | None:
        """Add a reaction (once per user and emoji); the message, or None."""
        reaction = {"emoji": emoji, "user_id": str(user_id) if user_id else None}
        return await update_and_read(
            self._messages,
            scoped(
                company_id,
                conversation_id=str(conversation_id),
                _id=message_id,
                **{"metadata.reactions": {"$not": {"$elemMatch": reaction}}},
            ),
            {"$push": {"metadata.reactions": {**reaction, "created_at": now()}}},
        ) or await self._messages.find_one(
            scoped(company_id, conversation_id=str(conversation_id), _id=message_id)
        )

    async def mark_read(
        self, company_id: UUID, conversation_id: ObjectId, message_id: ObjectId, user_id: UUID
    ) -> Document | None:
        """Record that ``user_id`` read the message (the first time counts)."""
        return await update_and_read(
            self._messages,
            scoped(
                company_id,
                conversation_id=str(conversation_id),
                _id=message_id,
                **{"read_by.user_id": {"$ne": str(user_id)}},
            ),
            {"$push": {"read_by": {"user_id": str(user_id), "read_at": now()}}},
        ) or await self._messages.find_one(
            scoped(company_id, conversation_id=str(conversation_id), _id=message_id)
        )

    # Retention ---------------------------------------------------------------------------

    async def purge_archived(
        self,
        company_id: UUID,
        archived_before: datetime,
        batch: int = 1000,
        removed: list[ObjectId] | None = None,
    ) -> tuple[int, int]:
        """Delete the company's conversations archived before the cut-off, and their
        messages; (conversations, messages) deleted, and their ids added to ``removed``.
        Messages go first, so an interrupted purge leaves no message without its
        conversation."""
        conversations = messages = 0
        while True:
            cursor = self._conversations.find(
                scoped(company_id, status="archived", updated_at={"$lt": archived_before}),
                {"_id": 1},
            ).limit(batch)
            ids = [document["_id"] async for document in cursor]
            if not ids:
                return conversations, messages
            texts = [str(i) for i in ids]
            if removed is not None:
                removed += ids
            deleted = await self._messages.delete_many(
                scoped(company_id, conversation_id={"$in": texts})
            )
            messages += deleted.deleted_count
            await self._notes.delete_many(scoped(company_id, conversation_id={"$in": texts}))
            gone = await self._conversations.delete_many(scoped(company_id, _id={"$in": ids}))
            conversations += gone.deleted_count

    # Analytics ---------------------------------------------------------------------------

    async def conversation_stats(
        self, company_id: UUID, since: datetime, group_by: str
    ) -> list[Document]:
        """The seed's aggregation: conversations started since ``since`` grouped by channel,
        day or agent, with their count and average duration (ended ones) in seconds."""
        keys = {
            "channel": "$channel",
            "agent": "$agent_id",
            "day": {"$dateToString": {"format": "%Y-%m-%d", "date": "$started_at"}},
        }
        pipeline: list[Document] = [
            {"$match": scoped(company_id, started_at={"$gte": since})},
            {
                "$group": {
                    "_id": keys[group_by],
                    "conversations": {"$sum": 1},
                    "average_duration_ms": {"$avg": {"$subtract": ["$ended_at", "$started_at"]}},
                }
            },
            {"$sort": {"conversations": -1, "_id": 1}},
        ]
        return await (await self._conversations.aggregate(pipeline)).to_list()

    async def model_stats(self, company_id: UUID, since: datetime) -> list[Document]:
        """AI messages since ``since`` per model: how many, tokens used, response time."""
        pipeline: list[Document] = [
            {"$match": scoped(company_id, created_at={"$gte": since},
                              **{"ai_metadata.model": {"$type": "string"}})},
            {
                "$group": {
                    "_id": "$ai_metadata.model",
                    "messages": {"$sum": 1},
                    "tokens_used": {"$sum": "$ai_metadata.tokens_used"},
                    "average_response_time_ms": {"$avg": "$ai_metadata.response_time_ms"},
                }
            },
            {"$sort": {"tokens_used": -1, "_id": 1}},
        ]  # fmt: skip
        return await (await self._messages.aggregate(pipeline)).to_list()

    async def message_stats(self, company_id: UUID, since: datetime) -> list[Document]:
        """Messages since ``since`` per sender type, with the average AI response time."""
        pipeline: list[Document] = [
            {"$match": scoped(company_id, created_at={"$gte": since})},
            {
                "$group": {
                    "_id": "$sender_type",
                    "messages": {"$sum": 1},
                    "average_response_time_ms": {"$avg": "$ai_metadata.response_time_ms"},
                }
            },
            {"$sort": {"_id": 1}},
        ]
        return await (await self._messages.aggregate(pipeline)).to_list()
