"""Tenant isolation through /rest/v1, for every table of ``public`` as ``pg_catalog``
lists it (a table a migration adds is covered without a change here): another company's
owner and member read nothing of company A (by id, by company, counted, embedded from
their own rows along every foreign key) and change nothing of it (PATCH, DELETE, upserts
and PUTs onto A's primary keys) — A's rows, read as the schema owner, are the same afterwards."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

TABLES = """
SELECT c.relname AS name,
       ARRAY(SELECT a.attname FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum) AS columns,
       coalesce(ARRAY(SELECT a.attname FROM pg_index i
                        JOIN pg_attribute a ON a.attrelid = i.indrelid
                                           AND a.attnum = ANY(i.indkey)
                       WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS primary_key,
       ARRAY(SELECT f.conname || '|' || (CASE WHEN f.conrelid = c.oid THEN r.relname
                                              ELSE o.relname END)
               FROM pg_constraint f
               JOIN pg_class r ON r.oid = f.confrelid
               JOIN pg_class o ON o.oid = f.conrelid
              WHERE f.contype = 'f' AND (f.conrelid = c.oid OR f.confrelid = c.oid)
                AND r.relnamespace = c.relnamespace AND o.relnamespace = c.relnamespace
                AND f.conrelid <> f.confrelid) AS embeds
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
 ORDER BY c.relname
"""

# How a table's rows belong to a company, for the tables without a company_id column. A
# new table without one fails the test until it is added here, deliberately.
OWNED_BY = {"companies": "id"}

# A writable-looking value for a column of each type (the write is refused or reaches no
# row either way; a value of the right type makes it reach the database's checks).
SAMPLE = {
    "text": "changed", "jsonb": {"changed": True}, "boolean": True, "integer": 7,
    "uuid": str(uuid.uuid4()), "timestamp with time zone": "2030-01-01T00:00:00Z",
}  # fmt: skip


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]
    primary_key: list[str]
    embeds: list[tuple[str, str]]  # (constraint, the other table)
    owner_column: str


def public_tables(owner_conn: psycopg.Connection) -> list[Table]:
    tables = []
    for name, columns, primary_key, embeds in owner_conn.execute(TABLES).fetchall():
        owner_column = "company_id" if "company_id" in columns else OWNED_BY.get(name)
        assert owner_column is not None, (
            f"public.{name} has no company_id: say in OWNED_BY how its rows belong to a company"
        )
        pairs = [tuple(item.split("|", 1)) for item in embeds]
        tables.append(Table(name, columns, primary_key, pairs, owner_column))
    return tables


def snapshot(owner_conn: psycopg.Connection, table: Table, company_id: uuid.UUID) -> Any:
    """Every row of ``table`` that belongs to ``company_id``, as the schema owner sees it."""
    query = (
        f"SELECT coalesce(json_agg(t ORDER BY t::text), '[]') FROM public.\"{table.name}\" t"  # noqa: S608
        f' WHERE t."{table.owner_column}" = %s'
    )
    return owner_conn.execute(query, (company_id,)).fetchone()


def column_types(owner_conn: psycopg.Connection, table: str) -> dict[str, str]:
    rows = owner_conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f'public."{table}"',),
    ).fetchall()
    return dict(rows)


def leaked(response: httpx.Response, secrets: set[str]) -> set[str]:
    """Which of ``secrets`` (company A's ids) a successful answer contains."""
    if response.status_code >= 400:
        return set()
    return {secret for secret in secrets if secret in response.text}


@pytest.mark.parametrize("attacker", ["owner", "member"])
async def test_another_company_reads_and_changes_nothing_of_company_a(
    rest_app: httpx.AsyncClient,
    auth: AuthHeaders,
    owner_conn: psycopg.Connection,
    tenant_a: SeededCompany,
    tenant_b: SeededCompany,
    attacker: str,
) -> None:
    principal: Principal = getattr(tenant_b, attacker)
    headers = auth(principal)
    a = tenant_a.company_id
    tables = public_tables(owner_conn)
    assert {"contacts", "deals", "companies", "users"} <= {t.name for t in tables}
    before = {table.name: snapshot(owner_conn, table, a) for table in tables}
    # A's uuids (a small integer id, such as a chunk's, would match anything).
    secrets = {str(a)} | {str(v) for v in tenant_a.rows.values() if isinstance(v, uuid.UUID)}
    problems: list[str] = []

    def check(what: str, response: httpx.Response, *, reads: bool = True) -> None:
        if response.status_code >= 500:
            problems.append(f"{what}: {response.status_code} {response.text[:200]}")
        elif reads and leaked(response, secrets):
            problems.append(f"{what}: leaked {leaked(response, secrets)}: {response.text[:300]}")

    for table in tables:
        base = f"/rest/v1/{table.name}"
        mine = f"{table.owner_column}=eq.{a}"
        check(f"GET {table.name} by company", await rest_app.get(f"{base}?{mine}", headers=headers))
        counted = await rest_app.get(
            f"{base}?{mine}", headers={**headers, "Prefer": "count=exact", "Range": "0-0"}
        )
        check(f"count {table.name}", counted)
        if counted.status_code < 400:
            assert counted.headers["content-range"].endswith("/0"), (table.name, counted.headers)
        if table.name in tenant_a.rows and "id" in table.columns:
            by_id = f"{base}?id=eq.{tenant_a.rows[table.name]}"
            check(f"GET {table.name} by id", await rest_app.get(by_id, headers=headers))
            check(
                f"HEAD {table.name} by id",
                await rest_app.head(by_id, headers={**headers, "Prefer": "count=exact"}),
            )
        check(
            f"GET {table.name} or",
            await rest_app.get(f"{base}?or=({table.owner_column}.eq.{a},{mine.replace('=', '.')})",
                               headers=headers),
        )  # fmt: skip
        for constraint, other in table.embeds:
            embed = f"{base}?select=*,{other}!{constraint}(*)"
            check(f"embed {table.name}->{other}", await rest_app.get(embed, headers=headers))
            inner = f"{base}?select=*,{other}!{constraint}!inner(*)"
            check(f"inner embed {table.name}->{other}", await rest_app.get(inner, headers=headers))

        types = column_types(owner_conn, table.name)
        settable = [
            c for c in table.columns
            if c not in table.primary_key and c != table.owner_column and types[c] in SAMPLE
        ]  # fmt: skip
        change = {settable[0]: SAMPLE[types[settable[0]]]} if settable else {}
        check(
            f"PATCH {table.name}",
            await rest_app.patch(f"{base}?{mine}", json=change,
                                 headers={**headers, "Prefer": "return=representation"}),
        )  # fmt: skip
        check(
            f"DELETE {table.name}",
            await rest_app.delete(f"{base}?{mine}",
                                  headers={**headers, "Prefer": "return=representation"}),
        )  # fmt: skip
        rows_of_a = before[table.name][0]
        if rows_of_a and table.primary_key:
            target = {key: rows_of_a[0][key] for key in table.primary_key}
            keyed = "&".join(f"{key}=eq.{value}" for key, value in target.items())
            check(
                f"PUT onto {table.name}",
                await rest_app.put(f"{base}?{keyed}", json={**target, **change},
                                   headers={**headers, "Prefer": "return=representation"}),
                reads=False,
            )  # fmt: skip
            for resolution in ("merge-duplicates", "ignore-duplicates"):
                prefer = {"Prefer": f"return=representation,resolution={resolution}"}
                check(
                    f"upsert ({resolution}) onto {table.name}",
                    await rest_app.post(base, json={**target, **change},
                                        headers={**headers, **prefer}),
                    reads=False,
                )  # fmt: skip

    after = {table.name: snapshot(owner_conn, table, a) for table in tables}
    changed = [name for name in before if before[name] != after[name]]
    assert not problems, "\n".join(problems)
    assert not changed, f"company A's rows changed in {changed}"
