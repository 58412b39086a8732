"""Search over every message of a company: the index (PostgreSQL full text) and its query.

The index is derived from MongoDB, which stays the source of truth (migration 028 says
why it lives in PostgreSQL, the README what production uses). A message is indexed
in the transaction that stores it, sent with its COMMIT: a rolled-back post leaves no
row, and indexing costs no round trip of its own. ``syntera maintenance reindex-messages``
rebuilds it (``syntera.conversations.reindex``).

A query is bounded whatever it is: ``q`` is at most 256 characters (the route), its
words are parsed by ``websearch_to_tsquery`` (quotes, ``or``, ``-``; no operator of the
client's reaches the parser raw, so regex or tsquery syntax is just text), only the
newest ``WINDOW`` matches are ranked (a word in every message costs a walk of the newest
rows, not a sort of all of them), and the statement has ``STATEMENT_TIMEOUT_MS``.
"""

from __future__ import annotations

import base64
import binascii
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from syntera.conversations.search_schemas import SearchContact, SearchHit, SearchResults
from syntera.db.mongo import Document
from syntera.db.postgres import TenantConnection
from syntera.errors import field_error
from syntera.unit_of_work import TenantTransaction

WINDOW = 100  # the newest matches that are ranked
RECENT_ROWS = 10_000  # the newest messages the first way reads
# A phrase found this often in the first walk is walked for further (see `_walk_for`).
PHRASE_MIN_FOUND = 10
PHRASE_ROWS = 50_000  # the longest walk for a phrase (about 50 ms)
# A phrase's words are common when this many of the newest SAMPLE_ROWS messages hold
# them all (0.5%): the GIN index's matches would be thousands of rows to recheck.
SAMPLE_ROWS = 2_000
COMMON_IN_SAMPLE = 10
STATEMENT_TIMEOUT_MS = 3000
CONTACTS = 5
MIN_CONTACT_QUERY = 3  # trigrams: a shorter pattern cannot use the index
# Private-use characters mark the matches inside PostgreSQL; the text is then escaped
# and they become <mark> tags, so nothing of the message is ever markup.
START, STOP = "\ue000", "\ue001"
HEADLINE = f"StartSel={START}, StopSel={STOP}, MaxWords=30, MinWords=12"


# Indexing ----------------------------------------------------------------------------

INDEX = b"SELECT private.index_messages(%(company)s::uuid, %(messages)s::jsonb)"
MOVE = (
    b"SELECT private.reindex_conversation(%(company)s::uuid, %(conversation)s, "
    b"%(contact)s::uuid, %(remove)s)"
)


def index_rows(conversation: Document, messages: Sequence[Document]) -> list[dict[str, Any]]:
    """The index's rows of a conversation's messages (as private.index_messages reads
    them)."""
    return [
        {
            "message_id": str(message["_id"]),
            "conversation_id": str(conversation["_id"]),
            "agent_id": conversation.get("agent_id"),
            "contact_id": conversation.get("contact_id"),
            "channel": conversation.get("channel", "chat"),
            "sender_type": message["sender_type"],
            "created_at": _aware(message["created_at"]).isoformat(),
            # jsonb (what private.index_messages reads) cannot hold a NUL character.
            "content": (message.get("content") or "").replace("\x00", ""),
        }
        for message in messages
    ]


def _aware(moment: datetime) -> datetime:
    """A time as UTC when a client read it without its zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def messages_json(rows: list[dict[str, Any]]) -> Jsonb:
    return Jsonb(rows, dumps=lambda value: orjson.dumps(value).decode())


async def index_messages(
    tx: TenantTransaction, conversation: Document, messages: Sequence[Document]
) -> None:
    """Index stored (or edited) messages, with the transaction's COMMIT."""
    if messages:
        rows = index_rows(conversation, messages)
        await tx.write_with_commit(
            INDEX, {"company": tx.company_id, "messages": messages_json(rows)}
        )


async def follow_contact(
    tx: TenantTransaction, conversation_id: str, contact_id: str | None
) -> None:
    """The conversation's contact changed: its indexed messages now name the new one
    (what an erasure of a contact finds them by)."""
    params = {"company": tx.company_id, "conversation": conversation_id,
              "contact": contact_id, "remove": False}  # fmt: skip
    await tx.write_with_commit(MOVE, params)


# Searching ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchCursor:
    """Where a page ended: its last hit's (score, message id), and the moment the first
    page was asked, so later pages rank the same window."""

    score: float
    message_id: str
    as_of: datetime
    # The candidates' way, as the first page found: the newest messages walked (RECENT),
    # or 0 for the GIN index's matches (INDEXED).
    recent: int

    def encode(self) -> str:
        raw = orjson.dumps([self.score, self.message_id, self.as_of.isoformat(), self.recent])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> SearchCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            score, message_id, as_of, recent = orjson.loads(raw)
            moment = datetime.fromisoformat(as_of)
            if not isinstance(score, int | float) or not isinstance(message_id, str):
                raise ValueError("a cursor holds a score and an id")
            if isinstance(recent, bool):  # a cursor of before the phrases' longer walk
                recent = RECENT_ROWS if recent else 0
            if not isinstance(recent, int) or not 0 <= recent <= PHRASE_ROWS:
                raise ValueError("a cursor's way is a number of rows")
            return cls(float(score), message_id, moment, recent)
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as error:
            raise field_error("cursor", "not a cursor returned by this API") from error


@dataclass(frozen=True)
class SearchQuery:
    """What a member asked: the words, the filters and the page."""

    q: str
    channel: str | None = None
    agent_id: UUID | None = None
    contact_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 20
    cursor: SearchCursor | None = None


WORDS = "SELECT numnode(websearch_to_tsquery('english', %(q)s)) AS nodes"

# The candidates, the newest WINDOW matches, come one of two ways, each with a plan that
# cannot go wrong (the planner's estimate for a word can be far off, and the wrong plan
# for a common word visits every page of a large company):
# * RECENT: the newest RECENT_ROWS messages of the company, read by the (company_id,
#   created_at) index (a few hundred contiguous pages), then filtered. A word in at least
#   one message in RECENT_ROWS / WINDOW (1%) fills the window here.
# * INDEXED: otherwise the word is rarer, so the GIN index's matches are few: a bitmap
#   scan, then the newest (private.search_messages: under row-level security a member's
#   own query could not use the GIN index, migration 028).
# A phrase ("a b": a <-> b) is the exception: the GIN index finds the messages holding
# every word, and each of them is read to check the words' order. For a phrase of common
# words that is hundreds of thousands of rows (EXPLAIN ANALYZE over 1,000,000 messages:
# 354,808 matches of the word, 582,979 rows rechecked, 1.0 s), while a walk of the newest
# messages costs about 1 us a row (23,298 rows walked for the newest 100 matches: 25 ms).
# So a phrase found at least PHRASE_MIN_FOUND times in the first walk is walked for as far
# as the first walk's density says the WINDOW needs, and half again (at most PHRASE_ROWS;
# its matches there are the candidates, should they still be fewer). A phrase found
# less often is taken from the GIN index when one of its words is rare (few rows to
# check), and otherwise searched among the newest PHRASE_ROWS messages only: a bounded
# answer (its dates reach older ones) rather than a second of rechecks.
RECENT = sql.SQL("""
  SELECT r.* FROM (
    SELECT s.id AS message_id, s.conversation_id, s.contact_id, s.sender_type, s.created_at,
           s.content, s.document
      FROM public.message_search s
     WHERE s.company_id = %(company)s AND s.created_at <= %(as_of)s {filters}
     ORDER BY s.created_at DESC, s.id DESC
     LIMIT %(recent_rows)s
  ) r
   WHERE r.document @@ websearch_to_tsquery('english', %(q)s)
   ORDER BY r.created_at DESC, r.message_id DESC
   LIMIT %(window)s
""")
INDEXED = sql.SQL("""
  SELECT * FROM private.search_messages(
    %(company)s, %(q)s, %(as_of)s, %(window)s, %(channel)s, %(agent_id)s::uuid,
    %(contact_id)s::uuid, %(since)s::timestamptz, %(until)s::timestamptz)
""")

# The candidates ranked, the page after the cursor, and only then the headlines (for
# the page's rows); `candidates` says whether the window was full.
SEARCH = sql.SQL("""
WITH newest AS ({candidates}), ranked AS (
  SELECT n.*, ts_rank_cd(n.document, websearch_to_tsquery('english', %(q)s)) AS score
    FROM newest n
), page AS (
  SELECT * FROM ranked r
   WHERE {after}
   ORDER BY r.score DESC, r.message_id DESC
   LIMIT %(limit)s
)
SELECT p.conversation_id, p.message_id, p.sender_type, p.created_at, p.contact_id, p.score,
       nullif(btrim(concat_ws(' ', c.first_name, c.last_name)), '') AS contact_full_name,
       c.email AS contact_email,
       ts_headline('english', translate(p.content, %(markers)s, ''),
                   websearch_to_tsquery('english', %(q)s), %(headline)s) AS fragment,
       (SELECT count(*) FROM newest) AS candidates,
       {phrase} AS phrase
  FROM page p
  LEFT JOIN public.contacts c ON c.company_id = %(company)s AND c.id = p.contact_id
 ORDER BY p.score DESC, p.message_id DESC
""")

# For a phrase (else null), how many of the newest SAMPLE_ROWS messages hold its words
# in any order: whether the GIN index's way would have many rows to check.
PHRASE = sql.SQL("websearch_to_tsquery('english', %(q)s)::text ~ '<(-|[0-9]+)>'")
WORDS_IN_SAMPLE = sql.SQL("""
SELECT CASE WHEN {phrase} THEN (
  SELECT count(*) FROM (
    SELECT s.document FROM public.message_search s
     WHERE s.company_id = %(company)s AND s.created_at <= %(as_of)s {filters}
     ORDER BY s.created_at DESC, s.id DESC
     LIMIT %(sample_rows)s
  ) r
   WHERE r.document @@ regexp_replace(websearch_to_tsquery('english', %(q)s)::text,
                                      '<(-|[0-9]+)>', '&', 'g')::tsquery
) END AS holding
""")

FILTERS = {
    "channel": sql.SQL("AND s.channel = %(channel)s"),
    "agent_id": sql.SQL("AND s.agent_id = %(agent_id)s"),
    "contact_id": sql.SQL("AND s.contact_id = %(contact_id)s"),
    "since": sql.SQL("AND s.created_at >= %(since)s"),
    "until": sql.SQL("AND s.created_at < %(until)s"),
}
FIRST_PAGE = sql.SQL("true")
AFTER = sql.SQL("(r.score, r.message_id) < (%(after_score)s::real, %(after_id)s)")

CONTACTS_MATCHING = """
SELECT c.id, nullif(btrim(concat_ws(' ', c.first_name, c.last_name)), '') AS name, c.email
  FROM public.contacts c
 WHERE c.company_id = %(company)s
   AND (coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '') || ' '
        || coalesce(c.email, '')) ILIKE %(pattern)s
 LIMIT %(limit)s
"""

TIMEOUT = "SELECT set_config('statement_timeout', %(ms)s, true)"


def visitor_name(conversation_id: str) -> str:
    """How a chat without a contact names its visitor: by a short id."""
    return f"Visitor {conversation_id[-6:]}"


def highlighted(fragment: str) -> str:
    """The headline as HTML: the message's text escaped, the matches marked."""
    return html.escape(fragment).replace(START, "<mark>").replace(STOP, "</mark>")


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(tx: TenantTransaction, query: SearchQuery) -> SearchResults:
    """The company's messages that match ``query.q``, best first (422 for a query with
    no word to search for, or one too broad to answer within the time limit)."""
    conn = tx.conn
    as_of = query.cursor.as_of if query.cursor else datetime.now(UTC)
    params: dict[str, Any] = {
        "company": tx.company_id, "q": query.q, "as_of": as_of, "window": WINDOW,
        "limit": query.limit + 1, "markers": START + STOP,
        "headline": HEADLINE, "channel": query.channel, "agent_id": query.agent_id,
        "contact_id": query.contact_id, "since": query.since, "until": query.until,
    }  # fmt: skip
    filters = sql.SQL(" ").join(FILTERS[name] for name in FILTERS if params[name] is not None)
    after = FIRST_PAGE
    if query.cursor is not None:
        params["after_score"] = query.cursor.score
        params["after_id"] = query.cursor.message_id
        after = AFTER
    recent = query.cursor.recent if query.cursor is not None else RECENT_ROWS
    try:
        rows = await _candidates(conn, recent, filters, after, params)
        if query.cursor is None and (not rows or rows[0]["candidates"] < WINDOW):
            recent = await _walk_for(conn, rows, filters, params)
            rows = await _candidates(conn, recent, filters, after, params)
        if not rows:  # no match, or nothing to match: say which
            words = await (await conn.execute(WORDS, {"q": query.q}, prepare=False)).fetchone()
            if words is None or words["nodes"] == 0:
                raise field_error("q", "has no word to search for (only stop words or punctuation)")
        contacts: list[SearchContact] = []
        if query.cursor is None and len(query.q.strip()) >= MIN_CONTACT_QUERY:
            contacts = await _contacts(tx, query.q.strip())
    except psycopg.errors.QueryCanceled as error:
        raise field_error(
            "q", "matches too much to rank in time: add words or filters (dates, channel)"
        ) from error
    hits = [_hit(row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = hits[-1]
        next_cursor = SearchCursor(last.score, last.message_id, as_of, recent).encode()
    return SearchResults(items=hits, next_cursor=next_cursor, contacts=contacts)


async def _walk_for(
    conn: TenantConnection,
    rows: list[dict[str, Any]],
    filters: sql.Composable,
    params: dict[str, Any],
) -> int:
    """After a first walk that found fewer than WINDOW: how many newest messages a
    phrase is walked for, or 0 for the GIN index's matches (a rarer word, or a phrase
    with a rare word). A phrase found often enough: as far as its density says, and
    half again; one of common words found rarely: PHRASE_ROWS."""
    if rows and not rows[0]["phrase"]:
        return 0
    found = rows[0]["candidates"] if rows else 0
    if found >= PHRASE_MIN_FOUND:
        return min(PHRASE_ROWS, WINDOW * RECENT_ROWS * 3 // (2 * found))
    sample = {**params, "sample_rows": SAMPLE_ROWS}
    statement = WORDS_IN_SAMPLE.format(phrase=PHRASE, filters=filters)
    row = await (await conn.execute(statement, sample, prepare=False)).fetchone()
    holding = row["holding"] if row is not None else None
    return PHRASE_ROWS if holding is not None and holding >= COMMON_IN_SAMPLE else 0


async def _candidates(
    conn: TenantConnection,
    recent: int,
    filters: sql.Composable,
    after: sql.Composable,
    params: dict[str, Any],
) -> list[dict[str, Any]]:
    """The page, from the candidates found the RECENT way (the newest ``recent``
    messages) or the INDEXED way (0); the time limit set in the same round trip."""
    params = {**params, "recent_rows": recent}
    candidates = RECENT.format(filters=filters) if recent else INDEXED
    statement = SEARCH.format(candidates=candidates, after=after, phrase=PHRASE)
    async with conn.pipeline():
        await conn.execute(TIMEOUT, {"ms": str(STATEMENT_TIMEOUT_MS)})
        found = await conn.execute(statement, params, prepare=False)
    return await found.fetchall()


def _hit(row: dict[str, Any]) -> SearchHit:
    name = row["contact_full_name"] or row["contact_email"]
    return SearchHit(
        conversation_id=row["conversation_id"],
        message_id=row["message_id"],
        sender_type=row["sender_type"],
        created_at=row["created_at"],
        contact_id=row["contact_id"],
        contact_name=name or visitor_name(row["conversation_id"]),
        fragment=highlighted(row["fragment"]),
        score=row["score"],
    )


async def _contacts(tx: TenantTransaction, text: str) -> list[SearchContact]:
    params = {"company": tx.company_id, "pattern": _like_pattern(text), "limit": CONTACTS}
    rows = await (await tx.conn.execute(CONTACTS_MATCHING, params, prepare=False)).fetchall()
    return [
        SearchContact(id=row["id"], name=row["name"] or row["email"] or "", email=row["email"])
        for row in rows
    ]
