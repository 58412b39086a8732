"""What an operator looks at: index use, sizes, slow statements, connections, MongoDB.

Read-only everywhere: every figure comes from PostgreSQL's statistics views
(``pg_stat_user_indexes``, ``pg_stat_user_tables``, ``pg_stat_statements``,
``pg_stat_activity``) and MongoDB's ``collStats``, ``serverStatus`` and profiler.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from pymongo import MongoClient
from pymongo.errors import OperationFailure

INDEX_USAGE = """
SELECT schemaname AS schema, relname AS table, indexrelname AS index,
       idx_scan AS scans, idx_tup_read AS tuples_read, idx_tup_fetch AS tuples_fetched,
       pg_relation_size(indexrelid) AS bytes, idx_scan = 0 AS never_used
  FROM pg_stat_user_indexes
 ORDER BY idx_scan, pg_relation_size(indexrelid) DESC
"""

TABLE_SIZES = """
SELECT schemaname AS schema, relname AS table,
       greatest(n_live_tup, 0) AS rows_estimate,
       pg_total_relation_size(relid) AS total_bytes,
       pg_relation_size(relid) AS table_bytes,
       pg_indexes_size(relid) AS index_bytes
  FROM pg_stat_user_tables
 ORDER BY pg_total_relation_size(relid) DESC
"""

SLOWEST_STATEMENTS = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 200) AS statement, calls,
       round(mean_exec_time::numeric, 3) AS mean_ms,
       round(max_exec_time::numeric, 3) AS max_ms,
       round(total_exec_time::numeric, 1) AS total_ms, rows
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY mean_exec_time DESC
 LIMIT %(limit)s
"""

CONNECTIONS = """
SELECT coalesce(nullif(application_name, ''), usename::text, 'background') AS application,
       count(*) FILTER (WHERE state = 'active') AS active,
       count(*) FILTER (WHERE state = 'idle') AS idle,
       count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction,
       count(*) AS total
  FROM pg_stat_activity
 WHERE datname = current_database()
 GROUP BY 1
 ORDER BY total DESC
"""


def _setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT current_setting(%s) AS value", (name,)).fetchone()
    return str(row["value"]) if row else ""


def postgres_stats(url: str, slowest: int = 10) -> dict[str, Any]:
    """Index use, table and index sizes, the slowest statements and the connections."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        stats: dict[str, Any] = {
            "indexes": conn.execute(INDEX_USAGE).fetchall(),
            "tables": conn.execute(TABLE_SIZES).fetchall(),
            "connections": conn.execute(CONNECTIONS).fetchall(),
            "max_connections": _setting(conn, "max_connections"),
        }
        try:
            stats["slowest_statements"] = conn.execute(
                SLOWEST_STATEMENTS, {"limit": slowest}
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            stats["slowest_statements"] = None
            stats["slowest_statements_unavailable"] = (
                "pg_stat_statements is not installed in this database (it needs "
                "shared_preload_libraries = 'pg_stat_statements' and CREATE EXTENSION)"
            )
        except psycopg.errors.ObjectNotInPrerequisiteState:
            stats["slowest_statements"] = None
            stats["slowest_statements_unavailable"] = (
                "pg_stat_statements is installed but not loaded (shared_preload_libraries lacks it)"
            )
    return stats


def mongo_stats(uri: str, database_name: str, slowest: int = 10) -> dict[str, Any]:
    """Collection and index sizes, connections and the profiler's slowest operations."""
    with MongoClient[dict[str, Any]](uri, serverSelectionTimeoutMS=5000) as client:
        database = client[database_name]
        collections = []
        for name in sorted(database.list_collection_names()):
            if name.startswith("system."):
                continue
            info = database.command("collStats", name)
            collections.append(
                {
                    "collection": name,
                    "documents": info.get("count", 0),
                    "bytes": info.get("size", 0),
                    "storage_bytes": info.get("storageSize", 0),
                    "index_bytes": info.get("totalIndexSize", 0),
                    "indexes": info.get("indexSizes", {}),
                }
            )
        try:
            connections = client.admin.command("serverStatus").get("connections", {})
        except OperationFailure:
            connections = {}
        try:
            profile = database.command("profile", -1)
            slow = list(
                database["system.profile"]
                .find({}, {"op": 1, "ns": 1, "millis": 1, "ts": 1, "command": 1})
                .sort("millis", -1)
                .limit(slowest)
            )
        except OperationFailure:
            profile, slow = {}, []
    return {
        "collections": collections,
        "connections": {k: connections.get(k) for k in ("current", "available")},
        "profiler": {"level": profile.get("was"), "slowms": profile.get("slowms")},
        "slowest_operations": [
            {
                "op": entry.get("op"),
                "namespace": entry.get("ns"),
                "millis": entry.get("millis"),
                "at": str(entry.get("ts")),
            }
            for entry in slow
        ],
    }


EXPLAIN_AS = """
SELECT set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', %(claims)s, true),
       set_config('request.jwt.claim.sub', %(sub)s, true)
"""


def explain_as_user(url: str, statement: str, email: str | None) -> str:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of ``statement``, as the user with ``email`` under
    row-level security (or as the owner when None), in a transaction rolled back after."""
    import orjson

    with psycopg.connect(url) as conn:
        if email is not None:
            row = conn.execute(
                "SELECT id FROM auth.users WHERE lower(email) = lower(%s)", (email,)
            ).fetchone()
            if row is None:
                raise LookupError(f"no user with email {email}")
            claims = {"sub": str(row[0]), "role": "authenticated", "aud": "authenticated"}
            conn.execute(EXPLAIN_AS, {"claims": orjson.dumps(claims).decode(), "sub": str(row[0])})
        plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}").fetchall()
        conn.rollback()  # ANALYZE ran it: whatever it changed is undone
    return "\n".join(line[0] for line in plan)
