"""The tenant transaction: one round trip to become the caller, commit or roll back."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import Format
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import (
    BECOME_PRINCIPAL,
    READ_MEMBERSHIP,
    TenantConnection,
    begin_as,
    create_api_pool,
    load_json,
    principal_settings,
    run_as,
    transaction_as,
)
from syntera.tenancy import Principal
from tests.api_fixtures import MakeTenant
from tests.conftest import StackDatabase
from tests.factories import SeededCompany

Pool = AsyncConnectionPool[TenantConnection]


@pytest.fixture(scope="module")
async def tenant(make_tenant: MakeTenant) -> SeededCompany:
    return await make_tenant()


async def test_runs_as_the_principal_with_its_claims(api_pool: Pool, tenant: SeededCompany) -> None:
    async with transaction_as(api_pool, tenant.member) as conn:
        row = await (
            await conn.execute(
                "SELECT current_user AS role, auth.uid() AS uid,"
                " private.current_company_id() AS company"
            )
        ).fetchone()
    assert row == {
        "role": "authenticated",
        "uid": tenant.member.user_id,
        "company": tenant.company_id,
    }


async def test_settings_do_not_leak_into_the_next_transaction(
    api_pool: Pool, tenant: SeededCompany
) -> None:
    async with transaction_as(api_pool, tenant.member):
        pass
    async with api_pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT current_user AS role,"
                " coalesce(current_setting('request.jwt.claims', true), '') AS claims"
            )
        ).fetchone()
    assert row == {"role": "authenticator", "claims": ""}


async def test_commits_when_the_block_ends(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant: SeededCompany
) -> None:
    async with transaction_as(api_pool, tenant.member) as conn:
        await conn.execute(
            "INSERT INTO public.contacts (company_id, email) VALUES (%s, 'committed@x.io')",
            (tenant.company_id,),
        )
    row = owner_conn.execute(
        "SELECT count(*) FROM public.contacts WHERE email = 'committed@x.io'"
    ).fetchone()
    assert row == (1,)


async def test_rolls_back_when_the_block_raises(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant: SeededCompany
) -> None:
    async def failing_request() -> None:
        async with transaction_as(api_pool, tenant.member) as conn:
            await conn.execute(
                "INSERT INTO public.contacts (company_id, email) VALUES (%s, 'lost@x.io')",
                (tenant.company_id,),
            )
            raise RuntimeError("request failed")

    with pytest.raises(RuntimeError):
        await failing_request()
    row = owner_conn.execute("SELECT count(*) FROM public.contacts WHERE email = 'lost@x.io'")
    assert row.fetchone() == (0,)


async def test_service_role_bypasses_rls(api_pool: Pool, tenant: SeededCompany) -> None:
    async with transaction_as(api_pool, Principal.service()) as conn:
        row = await (
            await conn.execute("SELECT current_user AS role, count(*) AS n FROM public.companies")
        ).fetchone()
    assert row is not None
    assert row["role"] == "service_role"
    assert row["n"] >= 1


async def test_becoming_the_principal_is_one_round_trip(
    api_pool: Pool, tenant: SeededCompany, tmp_path: Path
) -> None:
    """BEGIN and the settings go out as one batch ending in a single Sync (libpq's trace
    of the protocol messages shows every message the client sent)."""
    trace_path = tmp_path / "libpq.trace"
    async with api_pool.connection() as conn:
        with trace_path.open("w") as trace:
            conn.pgconn.trace(trace.fileno())
            try:
                await begin_as(conn, tenant.member)
            finally:
                conn.pgconn.untrace()
        await conn.rollback()
    messages = [
        (fields[1], fields[3])
        for fields in (line.split("\t") for line in trace_path.read_text().splitlines())
        if len(fields) > 3 and fields[1] in ("F", "B")
    ]
    sent = [kind for direction, kind in messages if direction == "F"]
    first_answer = next(i for i, (direction, _) in enumerate(messages) if direction == "B")
    assert all(direction == "B" for direction, _ in messages[first_answer:]), messages
    assert sent.count("Sync") == 1, sent
    assert "Query" not in sent, sent  # no separate simple-query BEGIN
    assert sent.count("Parse") == 3, sent  # BEGIN, the claims and role, the membership


async def test_statement_timeout_applies_to_tenant_transactions(
    database: StackDatabase, tenant: SeededCompany
) -> None:
    settings = Settings(pg_pool_min_size=1, pg_pool_max_size=1, pg_statement_timeout_ms=100)
    pool = create_api_pool(settings, database.api_url)
    await pool.open(wait=True)
    try:
        with pytest.raises(errors.QueryCanceled):
            async with transaction_as(pool, tenant.member) as conn:
                await conn.execute("SELECT pg_sleep(2)")
    finally:
        await pool.close()


# What json.loads reads, whatever load_json does to be faster: exact big integers,
# numbers beyond a double, escapes, nesting.
JSON_VALUES = [
    '{"source": "import", "score": 3, "ratio": 0.1, "tags": ["a", "b"], "ok": true}',
    '{"big": 123456789012345678901234567890, "small": -9223372036854775808}',
    '{"huge": 1e400, "tiny": 1e-400, "precise": 0.30000000000000004}',
    '{"text": "caf\\u00e9 \\u2603 \\ud83d\\ude00 \\"quoted\\" \\\\ back", "null": null}',
    '{"id": "12345678901234567890123"}',  # a long number in a string only
    '[[[[{"deep": [1, 2, {"x": {}}]}]]]]',
]


@pytest.mark.parametrize("text", JSON_VALUES)
async def test_json_columns_read_as_json_loads_reads_them(api_pool: Pool, text: str) -> None:
    import json

    async with api_pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT %s::jsonb AS b, %s::jsonb::text AS b_text, %s::json AS j",
                (text, text, text),
            )
        ).fetchone()
        jsonb = conn.adapters.types["jsonb"].oid
        loader = conn.adapters.get_loader(jsonb, Format.BINARY)
    assert loader is not None
    assert loader._loads is load_json  # the API's connections read JSON with load_json
    assert row is not None
    assert row["j"] == json.loads(text)
    assert row["b"] == json.loads(row["b_text"])  # jsonb sends its own rendering
    assert repr(row["b"]) == repr(json.loads(row["b_text"]))  # ints stay ints, exactly


def test_a_members_first_page_walks_the_company_index(owner_conn: psycopg.Connection) -> None:
    """The first page reads its rows off the (company_id, created_at) index, not every
    row of the company sorted: the plan PostgreSQL took, for 100 companies of 200
    contacts, when the company condition was written bare rather than as the policies'
    sub-select. Made, analysed and explained in one transaction, rolled back."""
    from syntera.crm.service import CONTACTS

    tag = uuid.uuid4().hex[:8]
    with owner_conn.transaction(force_rollback=True):
        owner_conn.execute(
            "INSERT INTO auth.users (email) SELECT format('plan-%%s-%%s@example.com', %s::text, g)"
            " FROM generate_series(1, 100) AS g",
            (tag,),
        )
        owner_conn.execute(
            "INSERT INTO public.companies (name, owner_id) SELECT 'Plan ' || email, id"
            " FROM auth.users WHERE email LIKE %s",
            (f"plan-{tag}-%",),
        )
        owner_conn.execute(
            "INSERT INTO public.contacts (company_id, email, created_at)"
            " SELECT c.id, format('c%%s@example.com', g), now() - random() * interval '365 days'"
            " FROM public.companies c CROSS JOIN generate_series(1, 200) AS g"
            " WHERE c.name LIKE %s",
            (f"Plan plan-{tag}-%",),
        )
        owner_conn.execute("ANALYZE public.contacts")
        owner = owner_conn.execute(
            "SELECT id FROM auth.users WHERE email LIKE %s LIMIT 1", (f"plan-{tag}-%",)
        ).fetchone()
        assert owner is not None
        owner_conn.execute(BECOME_PRINCIPAL, principal_settings(Principal.user(owner[0])))
        owner_conn.execute(READ_MEMBERSHIP)
        (plan,) = owner_conn.execute(
            b"EXPLAIN (FORMAT JSON) " + CONTACTS.table.first_page_query,
            {"limit": 21, "offset": 0},
        ).fetchone() or (None,)
    text = str(plan)
    assert "idx_contacts_company_created" in text, text
    assert "'Sort'" not in text, text


async def test_run_as_is_one_transaction_without_begin_or_commit(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant: SeededCompany
) -> None:
    """``run_as`` sends no BEGIN or COMMIT: what precedes the pipeline's one Sync is one
    transaction. Its settings hold for every statement and end with it; a statement that
    fails undoes the ones before it; read-only transactions refuse writes."""
    note = f"run-as-{uuid.uuid4().hex[:8]}"
    insert = (
        "INSERT INTO public.contacts (company_id, email) VALUES (private.current_company_id(),"
        " %(email)s) RETURNING current_setting('transaction_read_only') AS read_only,"
        " txid_current() AS tx"
    )
    _, [[first], [same]] = await run_as(
        api_pool, tenant.member,
        [(insert, {"email": f"{note}@x.io"}),
         ("SELECT txid_current() AS tx, current_user AS role", {})],
    )  # fmt: skip
    assert first["read_only"] == "off"
    assert same == {"tx": first["tx"], "role": "authenticated"}
    with pytest.raises(errors.DivisionByZero):
        await run_as(
            api_pool, tenant.member,
            [(insert, {"email": f"{note}-undone@x.io"}), ("SELECT 1 / 0", {})],
        )  # fmt: skip
    with pytest.raises(errors.ReadOnlySqlTransaction):
        await run_as(api_pool, tenant.member, [(insert, {"email": f"{note}-ro@x.io"})],
                     read_only=True)  # fmt: skip
    kept = owner_conn.execute(
        "SELECT email FROM public.contacts WHERE email LIKE %s ORDER BY email", [f"{note}%"]
    ).fetchall()
    assert [row[0] for row in kept] == [f"{note}@x.io"]
    async with api_pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT current_user AS role, current_setting('transaction_read_only') AS ro,"
                " coalesce(current_setting('request.jwt.claims', true), '') AS claims"
            )
        ).fetchone()
    assert row == {"role": "authenticator", "ro": "off", "claims": ""}
