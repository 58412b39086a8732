"""What the insights read and write in MongoDB, beside the conversations' store: a
message's intent and sentiment, and the aggregations of
the agents' reports. Every filter names ``company_id`` (``scoped``), as the
conversations' store does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bson import ObjectId

from syntera.conversations import figures
from syntera.conversations.store import CONVERSATIONS, MESSAGES, ConversationStore, scoped
from syntera.db.mongo import Document, update_and_read


class InsightStore:
    """The insights' reads and writes of one company at a time."""

    def __init__(self, conversations: ConversationStore) -> None:
        self.conversations = conversations
        self._conversations = conversations.database[CONVERSATIONS]
        self._messages = conversations.database[MESSAGES]

    async def messages(
        self, company_id: UUID, conversation_id: str, message_ids: Sequence[str]
    ) -> list[Document]:
        """These messages of the conversation (those still there)."""
        ids = [ObjectId(text) for text in message_ids if ObjectId.is_valid(text)]
        cursor = self._messages.find(
            scoped(company_id, conversation_id=conversation_id, _id={"$in": ids})
        )
        return await cursor.to_list()

    async def set_insights(
        self,
        company_id: UUID,
        conversation_id: str,
        message_id: ObjectId,
        metadata: Document,
        conversation: Document | None = None,
    ) -> Document | None:
        """Set ``metadata.intent`` and ``metadata.sentiment`` of a message; the message
        after, or None if it is gone. ``conversation``: as read a moment ago, if it was
        (its figures spare writes)."""
        changes = {f"metadata.{key}": value for key, value in metadata.items()}
        changed = await update_and_read(
            self._messages,
            scoped(company_id, conversation_id=conversation_id, _id=message_id),
            {"$set": changes},
        )
        score = figures.usable_score(metadata)
        if changed is not None and score is not None and ObjectId.is_valid(conversation_id):
            known = None if conversation is None else conversation.get(figures.FIGURES) or {}
            await self.conversations.note_sentiment(
                company_id, ObjectId(conversation_id), changed["created_at"], score, known
            )
        return changed

    # Reports ---------------------------------------------------------------------------

    async def report_conversations(
        self, company_id: UUID, start: datetime, end: datetime, agent_id: UUID | None
    ) -> list[Document]:
        """The conversations started in [start, end) (of one agent, if given): what the
        report needs of each."""
        conditions: Document = {"started_at": {"$gte": start, "$lt": end}}
        if agent_id is not None:
            conditions = {"agent_id": str(agent_id), **conditions}
        fields = ("agent_id", "started_at", "ended_at", "status", "handled_by",
                  "handoff_count", "rating", "figures")  # fmt: skip
        # A find, not an aggregation: SecantusDB evaluates a $project's expressions in
        # Python per document; the day is the started_at's UTC date, worked out here.
        found = await self._conversations.find(
            scoped(company_id, **conditions), dict.fromkeys(fields, 1)
        ).to_list()
        for document in found:
            document["day"] = document["started_at"].astimezone(UTC).date().isoformat()
        return found

    async def report_messages(
        self, company_id: UUID, start: datetime, end: datetime
    ) -> list[Document]:
        """Per conversation with messages created in [start, end): when the visitor first
        wrote, the first answer after that (the agent's or a teammate's), the agent's
        tokens and cost, and the sentiment scores of the visitor's classified messages,
        oldest first. One range over the company's messages (index company_created):
        SecantusDB answers a long ``$in`` of conversations by comparing every message
        with every id, which took over 45 s for 1,000 conversations."""
        pipeline = _per_conversation(company_id, start, end)
        return await (await self._messages.aggregate(pipeline)).to_list()


def _per_conversation(company_id: UUID, start: datetime, end: datetime) -> list[Document]:
    is_visitor = {"$eq": ["$sender_type", "user"]}
    is_answer = {"$eq": ["$sender_type", "agent"]}
    has_sentiment = {"$eq": [{"$type": "$metadata.sentiment.score"}, "double"]}
    return [
        {
            "$match": scoped(
                company_id,
                created_at={"$gte": start, "$lt": end},
                sender_type={"$in": ["user", "agent"]},
            )
        },
        {"$sort": {"conversation_id": 1, "created_at": 1, "_id": 1}},
        {
            "$group": {
                "_id": "$conversation_id",
                "first_visitor_at": {"$min": {"$cond": [is_visitor, "$created_at", None]}},
                "answers_at": {"$push": {"$cond": [is_answer, "$created_at", "$$REMOVE"]}},
                "tokens": {"$sum": {"$ifNull": ["$ai_metadata.tokens_used", 0]}},
                "cost": {"$sum": {"$toDouble": {"$ifNull": ["$ai_metadata.cost", 0]}}},
                "sentiments": {
                    "$push": {
                        "$cond": [
                            {"$and": [is_visitor, has_sentiment]},
                            "$metadata.sentiment.score",
                            "$$REMOVE",
                        ]
                    }
                },
            }
        },
        {
            "$project": {
                "first_visitor_at": 1,
                "tokens": 1,
                "cost": 1,
                "first_answer_at": {
                    "$min": {
                        "$filter": {
                            "input": "$answers_at",
                            "cond": {"$gt": ["$$this", "$first_visitor_at"]},
                        }
                    }
                },
                "sentiment_start": {"$arrayElemAt": ["$sentiments", 0]},
                "sentiment_end": {"$arrayElemAt": ["$sentiments", -1]},
            }
        },
    ]


def as_float(value: Any) -> float | None:
    """A number the aggregation returned, as a float (None stays None)."""
    return None if value is None else float(value)
