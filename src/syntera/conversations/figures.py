"""What the agents' reports need of a conversation, kept on it as it happens, so a report
is one read of the period's conversations instead of an aggregation over their messages.

On the conversation document (MongoDB):

- ``figures.first_visitor_at``: the visitor's first message;
- ``figures.first_answer_at``: the first answer (the agent's or a teammate's) after it;
- ``figures.tokens`` / ``figures.cost``: the agent's answers' ``ai_metadata`` added up;
- ``figures.sentiment_start`` / ``figures.sentiment_end``: ``{at, score}`` of the
  visitor's first and last classified messages (classification is asynchronous and may
  finish out of order, hence the time: an earlier message replaces the start, a later
  one the end);
- ``handoff_count`` and ``handed_off_at``: how many times, and when first, the
  conversation passed to people (``ConversationStore.hand_to``).

A conversation stored before these fields existed has no complete ``figures`` (``kept``):
the report works its figures out from its messages instead (``syntera.insights.reports``).
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from syntera.db.mongo import Document

FIGURES = "figures"


def empty() -> Document:
    """The figures of a conversation that has no message yet, marked ``complete``: kept
    from its start. A conversation stored before them gets a partial ``figures`` from
    its next message's ``$inc``, without the mark, and is still read from its messages."""
    return {"tokens": 0, "cost": 0.0, "complete": True}


def kept(conversation: Document) -> Document | None:
    """The conversation's figures if they were kept from its start, else None."""
    figures = conversation.get(FIGURES)
    return figures if isinstance(figures, dict) and figures.get("complete") is True else None


def _cost(value: Any) -> float:
    """A stored cost (a decimal string, or a number) in dollars; 0 for anything else."""
    if isinstance(value, bool):
        return 0.0
    try:
        cost = float(Decimal(str(value))) if value is not None else 0.0
    except (InvalidOperation, ValueError):
        return 0.0
    return cost if math.isfinite(cost) else 0.0


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def spent(documents: list[Document]) -> tuple[int, float]:
    """The tokens and dollars of these messages' ``ai_metadata``."""
    tokens, cost = 0, 0.0
    for document in documents:
        ai = document.get("ai_metadata")
        if isinstance(ai, dict):
            tokens += _tokens(ai.get("tokens_used"))
            cost += _cost(ai.get("cost"))
    return tokens, cost


def on_append(documents: list[Document], at: datetime) -> Document:
    """The update operators that add these new messages (all stored at ``at``) to the
    conversation's figures: tokens and cost, and the visitor's first message."""
    tokens, cost = spent(documents)
    update: Document = {"$inc": {f"{FIGURES}.tokens": tokens, f"{FIGURES}.cost": cost}}
    if any(document.get("sender_type") == "user" for document in documents):
        update["$min"] = {f"{FIGURES}.first_visitor_at": at}
    return update


def first_answer(
    documents: list[Document], at: datetime, known: Document | None = None
) -> tuple[Document, Document] | None:
    """If these new messages (stored at ``at``) hold an answer: the condition and the
    update that record it as the first answer to the visitor, which the write checks
    itself (the conversation had a visitor's message before ``at`` and no answer yet).
    ``known``: the conversation's figures as read a moment ago; a first answer they hold
    is never unset, so no write is needed then."""
    if not any(d.get("sender_type") == "agent" for d in documents):
        return None
    if known is not None and known.get("first_answer_at") is not None:
        return None
    condition = {f"{FIGURES}.first_answer_at": None, f"{FIGURES}.first_visitor_at": {"$lt": at}}
    return condition, {"$set": {f"{FIGURES}.first_answer_at": at}}


def usable_score(metadata: Document) -> float | None:
    """The sentiment score of a message's insights, if it is one (a number in [-1, 1])."""
    sentiment = metadata.get("sentiment")
    score = sentiment.get("score") if isinstance(sentiment, dict) else None
    if isinstance(score, bool) or not isinstance(score, int | float):
        return None
    return float(score) if -1.0 <= score <= 1.0 else None
