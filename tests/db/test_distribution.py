"""The schema against Citus's rules, after every migration: a later migration that
breaks one fails here. Citus itself is not installable on this machine; these are the
rules its documentation states (linked from the README), checked in the catalog.

Also the MongoDB shard keys: each leads with the tenant and is backed by an index."""

from __future__ import annotations

import psycopg
from typer.testing import CliRunner

from syntera.cli import app
from syntera.conversations.store import SHARD_KEYS, indexes
from syntera.ops.distribution import (
    DISTRIBUTED_TABLES,
    DISTRIBUTION_COLUMN,
    LOCAL_TABLES,
    REFERENCE_TABLES,
    citus_plan,
)

CLASSIFIED = (*REFERENCE_TABLES, *DISTRIBUTED_TABLES, *LOCAL_TABLES)

CONSTRAINTS = """
SELECT c.conrelid::regclass::text AS owner, c.contype AS kind, c.conname AS name,
       c.confrelid::regclass::text AS target,
       ARRAY(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY i)
         AS columns,
       ARRAY(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY i)
         AS target_columns
  FROM pg_constraint c
 WHERE c.contype IN ('p', 'u', 'f')
   AND c.connamespace IN ('public'::regnamespace, 'auth'::regnamespace,
                          'syntera'::regnamespace)
"""

UNIQUE_INDEXES = """
SELECT i.indrelid::regclass::text AS owner, i.indexrelid::regclass::text AS name,
       ARRAY(SELECT attname FROM unnest(i.indkey) k(n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n) AS columns
  FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
 WHERE i.indisunique AND t.relnamespace = 'public'::regnamespace
"""


def qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


def constraints(owner_conn: psycopg.Connection) -> list[dict[str, object]]:
    with owner_conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        rows = cursor.execute(CONSTRAINTS).fetchall()
    for row in rows:
        row["owner"] = qualified(str(row["owner"]))
        row["target"] = qualified(str(row["target"])) if row["target"] != "-" else None
    return rows


def test_every_table_is_distributed_referenced_or_local_exactly_once(
    owner_conn: psycopg.Connection,
) -> None:
    tables = {
        f"{schema}.{name}"
        for schema, name in owner_conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'auth', 'syntera')"
        ).fetchall()
    }
    assert sorted(CLASSIFIED) == sorted(set(CLASSIFIED)), "a table is classified twice"
    assert tables == set(CLASSIFIED), "classify every new table in ops/distribution.py"


def test_keys_of_distributed_tables_contain_the_distribution_column(
    owner_conn: psycopg.Connection,
) -> None:
    broken = [
        (row["owner"], row["name"], row["columns"])
        for row in constraints(owner_conn)
        if row["owner"] in DISTRIBUTED_TABLES
        and row["kind"] in ("p", "u")
        and DISTRIBUTION_COLUMN not in row["columns"]  # type: ignore[operator]
    ]
    with owner_conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        broken += [
            (qualified(row["owner"]), row["name"], row["columns"])
            for row in cursor.execute(UNIQUE_INDEXES).fetchall()
            if qualified(row["owner"]) in DISTRIBUTED_TABLES
            and DISTRIBUTION_COLUMN not in row["columns"]
        ]
    assert broken == []
    primary = {row["owner"] for row in constraints(owner_conn) if row["kind"] == "p"}
    assert set(DISTRIBUTED_TABLES) <= primary


def test_foreign_keys_respect_citus(owner_conn: psycopg.Connection) -> None:
    """Between distributed tables: company_id on both sides, in the same place. From a
    reference or local table: never to a distributed one."""
    for row in constraints(owner_conn):
        if row["kind"] != "f":
            continue
        owner, target = row["owner"], row["target"]
        columns, target_columns = list(row["columns"]), list(row["target_columns"])  # type: ignore[call-overload]
        if owner in DISTRIBUTED_TABLES and target in DISTRIBUTED_TABLES:
            assert DISTRIBUTION_COLUMN in columns, row
            place = columns.index(DISTRIBUTION_COLUMN)
            assert target_columns[place] == DISTRIBUTION_COLUMN, row
        if owner not in DISTRIBUTED_TABLES:
            assert target not in DISTRIBUTED_TABLES, row


def test_the_plan_creates_every_table_after_the_tables_it_references(
    owner_conn: psycopg.Connection,
) -> None:
    plan = citus_plan()
    order = {
        table: index
        for index, line in enumerate(plan)
        for table in CLASSIFIED
        if f"('{table}'" in line
    }
    assert set(order) == set(REFERENCE_TABLES) | set(DISTRIBUTED_TABLES)
    for row in constraints(owner_conn):
        if row["kind"] == "f" and row["owner"] in order and row["target"] != row["owner"]:
            assert order[row["target"]] < order[row["owner"]], row  # type: ignore[index]
    result = CliRunner().invoke(app, ["db", "distribution-plan"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == plan


def test_mongodb_shard_keys_lead_with_the_tenant_and_have_an_index() -> None:
    specs = indexes()
    for collection, key in SHARD_KEYS.items():
        assert key[0] == (DISTRIBUTION_COLUMN, 1)
        assert any(
            spec.collection == collection and spec.keys[: len(key)] == key for spec in specs
        ), f"no index of {collection} starts with its shard key {key}"
    result = CliRunner().invoke(app, ["db", "shard-plan"])
    assert result.exit_code == 0
    assert 'sh.shardCollection("syntera.messages", { company_id: 1, conversation_id: 1 });' in (
        result.stdout
    )
