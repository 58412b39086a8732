"""What the platform's operator watches beside ``ops.stats``: the work queues, purges,
slow statements with their plans, the backups on disk and how the stores grow.

Every figure is about the platform or counts rows per state; none shows a company's
conversations, contacts or documents. Read through the owner connection, in read-only
transactions (the size sampler, which writes its own table, aside).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pymongo import MongoClient

from syntera.db.mongo import SURROGATE
from syntera.ops.stats import TABLE_SIZES

USER_BY_EMAIL = """
SELECT u.id, o.user_id IS NOT NULL AS operator, p.company_id
  FROM auth.users u
  LEFT JOIN public.users p ON p.id = u.id
  LEFT JOIN syntera.operators o ON o.user_id = u.id
 WHERE lower(u.email) = lower(%(email)s)
"""

GRANT_OPERATOR = "INSERT INTO syntera.operators (user_id) VALUES (%(id)s) ON CONFLICT DO NOTHING"

REVOKE_OPERATOR = "DELETE FROM syntera.operators WHERE user_id = %(id)s"

OPERATORS = """
SELECT u.email, o.granted_at
  FROM syntera.operators o JOIN auth.users u ON u.id = o.user_id
 ORDER BY u.email
"""

QUEUES = """
SELECT 'documents' AS queue, status AS state, count(*) AS jobs,
       min(created_at) FILTER (WHERE status = 'pending') AS oldest_waiting
  FROM public.knowledge_base_documents GROUP BY status
UNION ALL
SELECT 'workflows', status, count(*), min(started_at) FILTER (WHERE status = 'pending')
  FROM public.workflow_executions GROUP BY status
UNION ALL
SELECT 'purges', status, count(*), min(created_at) FILTER (WHERE status = 'pending')
  FROM syntera.purges GROUP BY status
UNION ALL
SELECT 'insights', status, count(*), min(created_at) FILTER (WHERE status = 'pending')
  FROM syntera.insight_jobs GROUP BY status
UNION ALL
SELECT 'mail', CASE WHEN done_at IS NULL THEN 'pending' ELSE outcome END, count(*),
       min(created_at) FILTER (WHERE done_at IS NULL)
  FROM syntera.mail_outbox GROUP BY 2
UNION ALL
SELECT 'member departures', CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END,
       count(*), min(created_at)
  FROM syntera.member_departures GROUP BY 2
ORDER BY 1, 2
"""

RECENT_PURGES = """
SELECT id, kind, company_id, status, attempts, last_error, steps, created_at, finished_at
  FROM syntera.purges
 ORDER BY created_at DESC
 LIMIT %(limit)s
"""

# pg_stat_statements keeps each statement once, normalised ($1 for every constant).
SLOW_STATEMENTS = """
SELECT queryid, query, calls,
       round(mean_exec_time::numeric, 1)::float8 AS mean_ms,
       round(max_exec_time::numeric, 1)::float8 AS max_ms,
       round(total_exec_time::numeric, 1)::float8 AS total_ms
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND max_exec_time >= %(threshold_ms)s
   AND query !~* '^\\s*(explain|begin|commit|rollback|set|show|vacuum|analyze)\\M'
 ORDER BY max_exec_time DESC
 LIMIT %(limit)s
"""

RECORD_POSTGRES_SIZES = """
INSERT INTO syntera.size_samples (store, name, sampled_at, bytes, rows_estimate)
SELECT 'postgres', schemaname || '.' || relname, %(at)s,
       pg_total_relation_size(relid), greatest(n_live_tup, 0)
  FROM pg_stat_user_tables
"""

RECORD_MONGO_SIZE = """
INSERT INTO syntera.size_samples (store, name, sampled_at, bytes, rows_estimate)
VALUES ('mongodb', %(name)s, %(at)s, %(bytes)s, %(rows)s)
"""

LAST_SAMPLE = "SELECT max(sampled_at) AS at FROM syntera.size_samples"

SIZE_HISTORY = """
SELECT store, sampled_at AS at, sum(bytes)::bigint AS bytes, sum(rows_estimate)::bigint AS rows
  FROM syntera.size_samples
 WHERE sampled_at >= %(since)s
 GROUP BY store, sampled_at
 ORDER BY sampled_at, store
"""

# Each table's growth between its first sample in the period and now.
TABLE_GROWTH = """
SELECT DISTINCT ON (store, name) store, name,
       first_value(bytes) OVER w AS bytes_then, first_value(sampled_at) OVER w AS since
  FROM syntera.size_samples
 WHERE sampled_at >= %(since)s
WINDOW w AS (PARTITION BY store, name ORDER BY sampled_at)
"""


class OperatorError(Exception):
    """A grant or revocation that cannot be done, in words."""


def set_operator(url: str, email: str, operator: bool) -> bool:
    """Mark (or unmark) the user with ``email`` as a platform operator; False if they
    already were (or were not). An operator belongs to no company."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        user = conn.execute(USER_BY_EMAIL, {"email": email}).fetchone()
        if user is None:
            raise OperatorError(f"no user with email {email}")
        if operator and user["company_id"] is not None:
            raise OperatorError(
                f"{email} is a member of company {user['company_id']}; an operator belongs "
                "to no company (sign up a separate account for operating the platform)"
            )
        if user["operator"] == operator:
            return False
        conn.execute(GRANT_OPERATOR if operator else REVOKE_OPERATOR, {"id": user["id"]})
    return True


def operators(url: str) -> list[dict[str, Any]]:
    """Every platform operator."""
    with _read_only(url) as conn:
        return conn.execute(OPERATORS).fetchall()


def queues(url: str) -> list[dict[str, Any]]:
    """Jobs per queue and state, with the oldest waiting job's time."""
    with _read_only(url) as conn:
        return conn.execute(QUEUES).fetchall()


def recent_purges(url: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest purges (which company, which stores are done), newest first."""
    with _read_only(url) as conn:
        return conn.execute(RECENT_PURGES, {"limit": limit}).fetchall()


def slow_statements(url: str, threshold_ms: float, limit: int = 10) -> list[dict[str, Any]]:
    """Statements that once ran for ``threshold_ms`` or longer, slowest first, each with
    its generic plan (``EXPLAIN (GENERIC_PLAN)``: planned for any parameter values, never
    run). ``plan`` is None where no plan can be made (a utility statement, or a server
    before PostgreSQL 16)."""
    with _read_only(url) as conn:
        try:
            rows = conn.execute(
                SLOW_STATEMENTS, {"threshold_ms": threshold_ms, "limit": limit}
            ).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.ObjectNotInPrerequisiteState):
            conn.rollback()
            return []
        for row in rows:
            row["queryid"] = str(row["queryid"])
            row["plan"] = _generic_plan(conn, row["query"])
    return rows


def _generic_plan(conn: psycopg.Connection[dict[str, Any]], statement: str) -> str | None:
    # A read-only transaction and EXPLAIN without ANALYZE: the statement is planned only.
    conn.execute("SAVEPOINT plan")
    try:
        lines = conn.execute(
            psycopg.sql.SQL("EXPLAIN (GENERIC_PLAN) {}").format(psycopg.sql.SQL(statement)),
            prepare=False,
        ).fetchall()
    except psycopg.Error:
        conn.execute("ROLLBACK TO SAVEPOINT plan")
        return None
    conn.execute("RELEASE SAVEPOINT plan")
    return "\n".join(str(next(iter(line.values()))) for line in lines)


def backups(folder: Path) -> list[dict[str, Any]]:
    """The archives of `syntera backup` in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.tar.gz"):
        info = path.stat()
        found.append({
            "name": path.name,
            "bytes": info.st_size,
            "modified_at": datetime.fromtimestamp(info.st_mtime, UTC),
        })  # fmt: skip
    return sorted(found, key=lambda backup: backup["modified_at"], reverse=True)


def record_sizes(
    url: str, mongodb_uri: str, mongodb_db: str, every_s: float, mongodb_files: Path | None = None
) -> bool:
    """Record every table's and collection's size, unless a sample is younger than
    ``every_s`` (so several processes sampling at once record one); True if recorded.
    ``mongodb_files``: where the embedded MongoDB-wire server keeps its files, weighed
    instead of asking it (see ``mongo_sizes``)."""
    now = datetime.now(UTC)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        # One sampler at a time: the others wait, then see the fresh sample and stop.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('syntera.size_samples'))")
        last = conn.execute(LAST_SAMPLE).fetchone()
        if last and last["at"] and (now - last["at"]).total_seconds() < every_s:
            return False
        conn.execute(RECORD_POSTGRES_SIZES, {"at": now})
        for name, size, rows in mongo_sizes(mongodb_uri, mongodb_db, mongodb_files):
            conn.execute(RECORD_MONGO_SIZE, {"name": name, "at": now, "bytes": size, "rows": rows})
    return True


EMBEDDED_FILES = "(embedded server, all collections on disk)"


def mongo_sizes(uri: str, database_name: str, files: Path | None) -> list[tuple[str, int, int]]:
    """Each collection's bytes (data and indexes) and documents. The embedded SecantusDB
    answers ``collStats`` (and every count) by reading each document of the collection
    while holding its one lock: 40 s at 100,000 conversations, every request waiting. On
    it the folder of its files is weighed instead (one row, documents unknown: 0), or
    nothing is recorded when that folder is not known here."""
    with MongoClient[dict[str, Any]](uri, serverSelectionTimeoutMS=5000) as client:
        if SURROGATE in client.admin.command("buildInfo"):
            if files is None or not files.is_dir():
                return []
            weight = sum(path.stat().st_size for path in files.rglob("*") if path.is_file())
            return [(EMBEDDED_FILES, weight, 0)]
        database = client[database_name]
        sizes = []
        for name in database.list_collection_names():
            if name.startswith("system."):
                continue
            info = database.command("collStats", name)
            weight = info.get("storageSize", 0) + info.get("totalIndexSize", 0)
            sizes.append((name, weight, info.get("count", 0)))
        return sizes


def size_history(url: str, since: datetime) -> dict[str, Any]:
    """Each store's total size at every sample since ``since``, and each table's and
    collection's size now beside its size at the period's first sample."""
    with _read_only(url) as conn:
        totals = conn.execute(SIZE_HISTORY, {"since": since}).fetchall()
        then = {
            (row["store"], row["name"]): row
            for row in conn.execute(TABLE_GROWTH, {"since": since}).fetchall()
        }
        tables = []
        for row in conn.execute(TABLE_SIZES).fetchall():
            name = f"{row['schema']}.{row['table']}"
            first = then.get(("postgres", name))
            tables.append({
                "store": "postgres", "name": name, "bytes": row["total_bytes"],
                "rows_estimate": row["rows_estimate"],
                "bytes_then": first["bytes_then"] if first else None,
                "since": first["since"] if first else None,
            })  # fmt: skip
    return {"totals": totals, "tables": tables, "collections_then": [
        {"name": name, "bytes_then": row["bytes_then"], "since": row["since"]}
        for (store, name), row in then.items() if store == "mongodb"
    ]}  # fmt: skip


def _read_only(url: str) -> psycopg.Connection[dict[str, Any]]:
    conn = psycopg.connect(url, row_factory=dict_row)
    conn.read_only = True
    return conn
