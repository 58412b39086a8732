"""The schema of the seed: constraints, delete rules, indexes and the Supabase auth shim."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql

from tests.factories import create_auth_user


@pytest.fixture
def company(owner_conn: psycopg.Connection) -> uuid.UUID:
    """A company created directly as the schema owner."""
    owner = create_auth_user(owner_conn)
    row = owner_conn.execute(
        "INSERT INTO public.companies (name, owner_id) VALUES ('Co', %s) RETURNING id", (owner,)
    ).fetchone()
    assert row is not None
    company_id: uuid.UUID = row[0]
    return company_id


@pytest.fixture
def tx(owner_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """The owner connection inside a transaction that is rolled back after the test."""
    with owner_conn.transaction(force_rollback=True):
        yield owner_conn


# Every CHECK of the seed (and the ones added beside it), each with a value it must refuse.
BAD_VALUES = [
    ("deals", "stage", "'won'"),
    ("deals", "probability", "101"),
    ("deals", "probability", "-1"),
    ("deals", "value", "-5"),
    ("deals", "title", "'  '"),
    ("agent_configs", "temperature", "3"),
    ("agent_configs", "temperature", "-0.1"),
    ("agent_configs", "max_tokens", "0"),
    ("agent_configs", "name", "''"),
    ("knowledge_base_documents", "status", "'done'"),
    ("knowledge_base_documents", "chunk_count", "-1"),
    ("workflows", "trigger_type", "'on_tuesday'"),
    ("workflows", "nodes", "'{}'::jsonb"),
    ("users", "role", "'superuser'"),
    ("companies", "subscription_tier", "'platinum'"),
    ("call_history", "direction", "'sideways'"),
    ("call_history", "status", "'lost'"),
    ("call_recordings", "duration_seconds", "-3"),
    ("analytics_events", "event_type", "'Has Spaces'"),
]

VALID_ROWS = {
    "deals": "INSERT INTO public.deals (company_id, title) VALUES (%s, 'D') RETURNING id",
    "agent_configs": "INSERT INTO public.agent_configs (company_id, name, system_prompt)"
    " VALUES (%s, 'A', 'p') RETURNING id",
    "knowledge_base_documents": "INSERT INTO public.knowledge_base_documents"
    " (company_id, name, file_path) VALUES (%s, 'K', 'f') RETURNING id",
    "workflows": "INSERT INTO public.workflows (company_id, name, trigger_type)"
    " VALUES (%s, 'W', 'webhook') RETURNING id",
    "call_history": "INSERT INTO public.call_history (company_id, direction)"
    " VALUES (%s, 'inbound') RETURNING id",
    "call_recordings": "INSERT INTO public.call_recordings (company_id, recording_url)"
    " VALUES (%s, 'r') RETURNING id",
    "analytics_events": "INSERT INTO public.analytics_events (company_id, event_type)"
    " VALUES (%s, 'ok') RETURNING id",
}


@pytest.mark.parametrize(("table", "column", "value"), BAD_VALUES)
def test_check_constraint_rejects_bad_value(
    tx: psycopg.Connection, company: uuid.UUID, table: str, column: str, value: str
) -> None:
    if table == "companies":
        target = company
    elif table == "users":
        target = create_auth_user(tx)
    else:
        row = tx.execute(VALID_ROWS[table], (company,)).fetchone()
        assert row is not None
        target = row[0]
    with pytest.raises(errors.CheckViolation) as raised, tx.transaction():
        tx.execute(
            sql.SQL("UPDATE {} SET {} = {} WHERE id = %s").format(
                sql.Identifier("public", table), sql.Identifier(column), sql.SQL(value)
            ),
            (target,),
        )
    assert raised.value.diag.table_name == table


def test_seed_defaults(tx: psycopg.Connection, company: uuid.UUID) -> None:
    row = tx.execute(
        "INSERT INTO public.agent_configs (company_id, name, system_prompt) VALUES (%s, 'A', 'p')"
        " RETURNING model, temperature::text, voice_settings, enabled",
        (company,),
    ).fetchone()
    assert row == ("gpt-4o-mini", "0.70", {}, True)
    deal = tx.execute(
        "INSERT INTO public.deals (company_id, title) VALUES (%s, 'D')"
        " RETURNING stage, probability, metadata",
        (company,),
    ).fetchone()
    assert deal == ("lead", 0, {})
    tier = tx.execute("SELECT subscription_tier FROM public.companies WHERE id = %s", (company,))
    assert tier.fetchone() == ("starter",)


def test_deleting_a_contact_keeps_the_deal_and_its_company(
    tx: psycopg.Connection, company: uuid.UUID
) -> None:
    contact = tx.execute(
        "INSERT INTO public.contacts (company_id) VALUES (%s) RETURNING id", (company,)
    ).fetchone()
    assert contact is not None
    deal = tx.execute(
        "INSERT INTO public.deals (company_id, contact_id, title) VALUES (%s, %s, 'D')"
        " RETURNING id",
        (company, contact[0]),
    ).fetchone()
    assert deal is not None
    tx.execute("DELETE FROM public.contacts WHERE id = %s", (contact[0],))
    row = tx.execute(
        "SELECT company_id, contact_id FROM public.deals WHERE id = %s", (deal[0],)
    ).fetchone()
    assert row == (company, None)


def test_deleting_an_agent_keeps_its_documents(tx: psycopg.Connection, company: uuid.UUID) -> None:
    agent = tx.execute(VALID_ROWS["agent_configs"], (company,)).fetchone()
    assert agent is not None
    tx.execute(
        "INSERT INTO public.knowledge_base_documents (company_id, agent_id, name, file_path)"
        " VALUES (%s, %s, 'K', 'f')",
        (company, agent[0]),
    )
    tx.execute("DELETE FROM public.agent_configs WHERE id = %s", (agent[0],))
    row = tx.execute(
        "SELECT agent_id FROM public.knowledge_base_documents WHERE company_id = %s", (company,)
    ).fetchone()
    assert row == (None,)


def test_deleting_a_company_cascades_to_its_data_and_frees_its_users(
    tx: psycopg.Connection, company: uuid.UUID
) -> None:
    owner = tx.execute("SELECT owner_id FROM public.companies WHERE id = %s", (company,))
    owner_id = owner.fetchone()[0]  # type: ignore[index]
    for statement in VALID_ROWS.values():
        tx.execute(statement, (company,))
    tx.execute("DELETE FROM public.companies WHERE id = %s", (company,))
    for table in VALID_ROWS:
        count = tx.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE company_id = %s").format(
                sql.Identifier("public", table)
            ),
            (company,),
        )
        assert count.fetchone() == (0,), table
    user = tx.execute("SELECT company_id FROM public.users WHERE id = %s", (owner_id,))
    assert user.fetchone() == (None,)  # SET NULL: the user record survives


def test_deleting_an_auth_user_deletes_the_public_user(tx: psycopg.Connection) -> None:
    user_id = create_auth_user(tx)
    tx.execute("DELETE FROM auth.users WHERE id = %s", (user_id,))
    assert tx.execute("SELECT 1 FROM public.users WHERE id = %s", (user_id,)).fetchone() is None


def test_updated_at_is_maintained_by_trigger(tx: psycopg.Connection, company: uuid.UUID) -> None:
    row = tx.execute(
        "INSERT INTO public.contacts (company_id, created_at, updated_at)"
        " VALUES (%s, now() - interval '1 day', now() - interval '1 day') RETURNING id",
        (company,),
    ).fetchone()
    assert row is not None
    tx.execute("UPDATE public.contacts SET first_name = 'Ann' WHERE id = %s", (row[0],))
    changed = tx.execute(
        "SELECT updated_at > created_at + interval '12 hours' FROM public.contacts WHERE id = %s",
        (row[0],),
    )
    assert changed.fetchone() == (True,)


SEED_INDEXES = {
    "idx_agent_configs_company_id": "(company_id)",
    "idx_contacts_company_id": "(company_id)",
    "idx_deals_company_id": "(company_id)",
    "idx_kb_documents_status": "(status)",
    "idx_workflows_enabled": "(enabled)",
    "idx_analytics_events_created_at": "(created_at)",
    "idx_call_recordings_started_at": "(started_at DESC)",
    "idx_kb_documents_company_status": "(company_id, status)",
    "idx_kb_documents_company_created": "(company_id, created_at DESC)",
    "idx_call_history_company_started": "(company_id, started_at DESC)",
    "idx_agent_configs_public_api_key": "(public_api_key) WHERE (public_api_key IS NOT NULL)",
}


def test_every_index_of_the_seed_exists(owner_conn: psycopg.Connection) -> None:
    rows = owner_conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    ).fetchall()
    definitions = dict(rows)
    for name, columns in SEED_INDEXES.items():
        assert name in definitions, name
        assert definitions[name].endswith(columns), definitions[name]


def test_every_foreign_key_is_indexed(owner_conn: psycopg.Connection) -> None:
    """Each foreign key's columns lead some index of its table (deletes and joins use it)."""
    missing = owner_conn.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname
          FROM pg_constraint c
         WHERE c.contype = 'f'
           AND c.connamespace IN ('public'::regnamespace, 'auth'::regnamespace)
           AND NOT EXISTS (
             SELECT 1 FROM pg_index i
              WHERE i.indrelid = c.conrelid
                AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey
           )
        """
    ).fetchall()
    assert missing == []


def test_every_tenant_table_has_unique_company_and_id(owner_conn: psycopg.Connection) -> None:
    rows = owner_conn.execute(
        """
        SELECT t.relname FROM pg_class t
         WHERE t.relnamespace = 'public'::regnamespace AND t.relkind = 'r'
           AND t.relname <> 'companies'
           AND NOT EXISTS (
             SELECT 1 FROM pg_constraint c
              WHERE c.conrelid = t.oid AND c.contype IN ('u', 'p')
                AND pg_get_constraintdef(c.oid)
                    IN ('UNIQUE (company_id, id)', 'PRIMARY KEY (company_id, id)'))
        """
    ).fetchall()
    assert rows == []


# --- the Supabase-compatible auth layer ----------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("request.jwt.claims", '{"sub": "00000000-0000-0000-0000-000000000001"}', "1"),
        ("request.jwt.claim.sub", "00000000-0000-0000-0000-000000000002", "2"),
        ("request.jwt.claims", "", None),
        ("request.jwt.claim.sub", "", None),
    ],
)
def test_auth_uid_reads_claims_like_supabase(
    tx: psycopg.Connection, setting: str, value: str, expected: str | None
) -> None:
    tx.execute("SELECT set_config(%s, %s, true)", (setting, value))
    row = tx.execute("SELECT auth.uid()").fetchone()
    assert row is not None
    want = None if expected is None else uuid.UUID(int=int(expected))
    assert row[0] == want


def test_auth_role_and_jwt(tx: psycopg.Connection) -> None:
    claims = '{"sub": "00000000-0000-0000-0000-000000000001", "role": "authenticated"}'
    tx.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
    row = tx.execute("SELECT auth.role(), auth.jwt() ->> 'role'").fetchone()
    assert row == ("authenticated", "authenticated")


def test_api_roles_have_supabase_attributes(owner_conn: psycopg.Connection) -> None:
    rows = owner_conn.execute(
        "SELECT rolname, rolcanlogin, rolinherit, rolsuper, rolbypassrls FROM pg_roles"
        " WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator')"
        " ORDER BY rolname"
    ).fetchall()
    assert rows == [
        ("anon", False, False, False, False),
        ("authenticated", False, False, False, False),
        ("authenticator", True, False, False, False),
        ("service_role", False, False, False, True),
    ]
    members = owner_conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = 'authenticator'::regrole ORDER BY 1"
    ).fetchall()
    # service_role is the system's login's alone (migration 025, issue 35 cause 2). Roles
    # that tests of /rest/v1 create for the API login (rest_reader) may join the list.
    names = {name for (name,) in members}
    assert {"anon", "authenticated"} <= names
    assert not names & {"service_role", "syntera_system", "syntera_definer"}
    bypassing = owner_conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = 'authenticator'::regrole AND (r.rolbypassrls OR r.rolsuper)"
    ).fetchall()
    assert bypassing == []
    system = owner_conn.execute(
        "SELECT r.rolcanlogin, r.rolinherit, r.rolsuper, r.rolbypassrls,"
        " array(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        "       WHERE m.member = r.oid ORDER BY 1)"
        " FROM pg_roles r WHERE r.rolname = 'syntera_system'"
    ).fetchall()
    assert system == [(True, False, False, False, ["service_role"])]


def test_auth_users_insertable_with_id_and_email(tx: psycopg.Connection) -> None:
    user_id = uuid.uuid4()
    tx.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'Mixed@Example.com')", (user_id,))
    row = tx.execute("SELECT email, company_id, role FROM public.users WHERE id = %s", (user_id,))
    assert row.fetchone() == ("mixed@example.com", None, "user")


def test_api_roles_cannot_create_in_the_helper_schema(owner_conn: psycopg.Connection) -> None:
    for role in ("anon", "authenticated", "service_role", "authenticator"):
        row = owner_conn.execute(
            "SELECT has_schema_privilege(%s, 'private', 'CREATE')", (role,)
        ).fetchone()
        assert row == (False,), role
