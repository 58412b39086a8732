"""The reports on the agents' work: per day and per agent, what the team needs to judge
how well its agents answer.

Each conversation keeps its own figures as it happens (``syntera.conversations.
figures``: first visitor message and first answer, tokens, cost, first and last
sentiment scores, hand-offs), so the report reads the period's conversations once and
puts the per-(day, agent) figures together here. Conversations stored before those
figures existed are worked out from their messages (one aggregation over the company's
messages from the period's start to a week after its end, grouped by conversation),
and only when the period holds some. Medians and 90th percentiles are exact (nearest
rank) on every MongoDB version, where ``$percentile`` (7.0+) is approximate. The period is bounded
(at most ``MAX_DAYS``), and every read is the caller's company's. The definitions below
are returned with every report and documented in docs/reports.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from statistics import fmean
from uuid import UUID

from syntera.agents.service import AGENTS
from syntera.conversations import figures
from syntera.db.mongo import Document
from syntera.errors import field_error
from syntera.insights.schemas import AgentDay, AgentReport, Percentiles, Satisfaction
from syntera.insights.store import InsightStore, as_float
from syntera.kit.resources import check_reference
from syntera.unit_of_work import TenantTransaction

MAX_DAYS = 366
DEFAULT_DAYS = 30
# Messages of the period's conversations are read up to this long after its last day.
MESSAGES_AFTER = timedelta(days=7)

DEFINITIONS: dict[str, str] = {
    "day": "The day (UTC) the conversation started; a conversation counts on that day only.",
    "agent_id": "The agent the conversation was started with.",
    "conversations": "Conversations started that day with that agent.",
    "first_response_ms": "Time from the visitor's first message to the first answer after it "
    "(the agent's or a teammate's; system lines do not count), over the conversations that "
    "have both; p50 and p90 by nearest rank, in milliseconds.",
    "resolution_ms": "Time from the start of a conversation to its end, over the "
    "conversations that ended; p50 and p90 by nearest rank, in milliseconds.",
    "handoff_rate": "Share of the conversations that passed to people at least once "
    "(handoff_count > 0), whoever has them now: the visitor asked for a person, the "
    "knowledge base had nothing twice, the model failed, the token budget was spent, a "
    "teammate replied or took over (POST /handoff). Conversations stored before hand-offs "
    "were counted: those in people's hands when the report is read.",
    "resolved_by_agent_rate": "Share of the conversations that ended without ever passing "
    "to people (a conversation handed back to the agent still counts as handed off).",
    "tokens_per_conversation": "Tokens of the agent's answers (ai_metadata.tokens_used: "
    "prompt and completion) divided by the conversations.",
    "cost_per_conversation": "Dollars of the agent's answers (ai_metadata.cost, priced by "
    "SYNTERA_LLM_PRICES; the local model costs nothing) divided by the conversations.",
    "sentiment_start": "Mean over the conversations of the sentiment score (-1 negative to "
    "1 positive) of the visitor's first classified message; null when none is classified.",
    "sentiment_end": "The same for the visitor's last classified message.",
    "satisfaction": "count: conversations the visitor rated when the chat ended; average: "
    "their mean rating (1 to 5).",
}


def period(start: date | None, end: date | None, today: date | None = None) -> tuple[date, date]:
    """The days reported: ``start`` to ``end`` included (default: the last 30 days up to
    today, UTC); 422 naming the field for a reversed or too long period."""
    end = end or today or datetime.now(UTC).date()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise field_error("from", "is after to")
    if (end - start).days + 1 > MAX_DAYS:
        raise field_error("to", f"a report covers at most {MAX_DAYS} days")
    return start, end


def nearest_rank(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``share`` of the
    values at or below it (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)), 1) - 1]


def _percentiles(values: list[float]) -> Percentiles:
    return Percentiles(p50=nearest_rank(values, 0.5), p90=nearest_rank(values, 0.9))


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 4) if values else None


@dataclass
class _Group:
    """What the conversations of one day and agent add up to."""

    conversations: int = 0
    first_response: list[float] = field(default_factory=list)
    resolution: list[float] = field(default_factory=list)
    handed_off: int = 0
    resolved_by_agent: int = 0
    tokens: float = 0
    cost: float = 0
    sentiment_start: list[float] = field(default_factory=list)
    sentiment_end: list[float] = field(default_factory=list)
    ratings: list[float] = field(default_factory=list)

    def add(self, conversation: Document, messages: Document | None) -> None:
        """Count one conversation: its figures kept on it (``syntera.conversations.
        figures``), else (stored before them) ``messages``, what its messages add up to."""
        self.conversations += 1
        handed_off = handed_to_people(conversation)
        ended_at = conversation.get("ended_at")
        if handed_off:
            self.handed_off += 1
        if ended_at is not None:
            self.resolution.append(_ms(ended_at - conversation["started_at"]))
            if not handed_off:
                self.resolved_by_agent += 1
        rating = conversation.get("rating")
        if isinstance(rating, dict) and isinstance(rating.get("score"), int | float):
            self.ratings.append(float(rating["score"]))
        kept = figures.kept(conversation)
        if kept is not None:
            messages = {
                "first_visitor_at": kept.get("first_visitor_at"),
                "first_answer_at": kept.get("first_answer_at"),
                "tokens": kept.get("tokens"),
                "cost": kept.get("cost"),
                "sentiment_start": _score(kept.get("sentiment_start")),
                "sentiment_end": _score(kept.get("sentiment_end")),
            }
        if messages is None:
            return
        first_visitor, first_answer = (
            messages.get("first_visitor_at"),
            messages.get("first_answer_at"),
        )
        if first_visitor is not None and first_answer is not None:
            self.first_response.append(_ms(first_answer - first_visitor))
        self.tokens += as_float(messages.get("tokens")) or 0
        self.cost += as_float(messages.get("cost")) or 0
        for values, key in ((self.sentiment_start, "sentiment_start"),
                            (self.sentiment_end, "sentiment_end")):  # fmt: skip
            score = as_float(messages.get(key))
            # A sentiment score is in [-1, 1]; one a client wrote outside it (they may
            # send their own) is not a sentiment, and could overflow the mean.
            if score is not None and -1.0 <= score <= 1.0:
                values.append(score)

    def row(self, day: date, agent_id: UUID, agent_name: str | None) -> AgentDay:
        n = self.conversations
        return AgentDay(
            day=day,
            agent_id=agent_id,
            agent_name=agent_name,
            conversations=n,
            first_response_ms=_percentiles(self.first_response),
            resolution_ms=_percentiles(self.resolution),
            handoff_rate=round(self.handed_off / n, 4),
            resolved_by_agent_rate=round(self.resolved_by_agent / n, 4),
            tokens_per_conversation=round(self.tokens / n, 2),
            cost_per_conversation=round(self.cost / n, 6),
            sentiment_start=_mean(self.sentiment_start),
            sentiment_end=_mean(self.sentiment_end),
            satisfaction=Satisfaction(count=len(self.ratings), average=_mean(self.ratings)),
        )


def handed_to_people(conversation: Document) -> bool:
    """Whether the conversation ever passed to people (``handoff_count``; one stored
    before hand-offs were counted: whether people have it now)."""
    count = conversation.get("handoff_count")
    if isinstance(count, int):
        return count > 0
    return conversation.get("handled_by") == "human"


def _score(kept: object) -> float | None:
    return as_float(kept.get("score")) if isinstance(kept, dict) else None


def _ms(delta: timedelta) -> float:
    return round(delta.total_seconds() * 1000, 1)


AGENT_NAMES = "SELECT id, name FROM public.agent_configs WHERE company_id = %(company_id)s"


async def agent_report(
    tx: TenantTransaction,
    store: InsightStore,
    start: date | None,
    end: date | None,
    agent_id: UUID | None,
) -> AgentReport:
    """The report of the caller's company's agents over ``start`` to ``end`` (UTC days,
    both included), of one agent if given (422 if it is not the company's)."""
    first, last = period(start, end)
    await check_reference(tx, AGENTS, agent_id, "agent_id")
    begin = datetime.combine(first, time.min, UTC)
    finish = datetime.combine(last + timedelta(days=1), time.min, UTC)
    conversations, per_conversation = await gather(store, tx.company_id, begin, finish, agent_id)
    rows = await (await tx.conn.execute(AGENT_NAMES, {"company_id": tx.company_id})).fetchall()
    names = {str(row["id"]): str(row["name"]) for row in rows}
    report = rows_of(conversations, per_conversation, names)
    return AgentReport(from_day=first, to_day=last, rows=report, definitions=DEFINITIONS)


async def gather(
    store: InsightStore, company_id: UUID, begin: datetime, finish: datetime, agent_id: UUID | None
) -> tuple[list[Document], dict[str, Document]]:
    """The company's conversations started in [begin, finish), and what their messages
    add up to, by conversation id."""
    conversations = await store.report_conversations(company_id, begin, finish, agent_id)
    # Only conversations stored before their figures were kept need their messages read.
    ids = {str(d["_id"]) for d in conversations if figures.kept(d) is None}
    if not ids:
        return conversations, {}
    found = await store.report_messages(company_id, begin, finish + MESSAGES_AFTER)
    return conversations, {str(d["_id"]): d for d in found if str(d["_id"]) in ids}


def rows_of(
    conversations: list[Document], per_conversation: dict[str, Document], names: dict[str, str]
) -> list[AgentDay]:
    """The report's rows: one per day and agent, by day then agent name."""
    groups: dict[tuple[str, str], _Group] = defaultdict(_Group)
    for conversation in conversations:
        key = (conversation["day"], str(conversation.get("agent_id")))
        groups[key].add(conversation, per_conversation.get(str(conversation["_id"])))
    report = [
        group.row(date.fromisoformat(day), UUID(agent), names.get(agent))
        for (day, agent), group in groups.items()
        if _is_uuid(agent)
    ]
    report.sort(key=lambda row: (row.day, row.agent_name or "", str(row.agent_id)))
    return report


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
