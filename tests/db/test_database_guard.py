"""The database as the only guard (issue 35): what a client could try once it sends its
own SQL, as `/rest/v1` will let it.

Every attack runs as the API runs a request: through the ``authenticator`` login, with
``role`` set to ``authenticated`` (or ``anon``) and the caller's own claims in
``request.jwt.claims`` (``syntera.db.postgres.become``), then the attacker's statements.
Each is rolled back. Besides one test per cause, generic tests guard each class, so that
a later migration cannot reopen it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg_pool import AsyncConnectionPool

from syntera.db.postgres import TenantConnection, become, pool_for, transaction_as
from syntera.tenancy import Principal
from tests.api_fixtures import MakeTenant
from tests.conftest import StackDatabase
from tests.factories import SeededCompany, create_auth_user

Pool = AsyncConnectionPool[TenantConnection]


@asynccontextmanager
async def attacker(pool: Pool, principal: Principal) -> AsyncIterator[TenantConnection]:
    """A transaction as ``principal``, set up exactly as a request's, never committed."""
    async with (
        pool_for(pool, principal).connection() as conn,
        conn.transaction(force_rollback=True),
    ):
        await become(conn, principal)
        yield conn


async def refused(conn: TenantConnection, query: Any, params: Any = None) -> psycopg.Error:
    """Run ``query`` in a savepoint and return the error it must raise."""
    try:
        async with conn.transaction():
            await conn.execute(query, params)
    except psycopg.Error as error:
        return error
    raise AssertionError(f"not refused: {query!r}")


async def rows(conn: TenantConnection, query: Any, params: Any = None) -> list[dict[str, Any]]:
    return await (await conn.execute(query, params)).fetchall()


# --- 1. pg_temp inside SECURITY DEFINER functions ---------------------------------------------


@pytest.mark.parametrize("principal", ["anon", "authenticated"])
async def test_api_roles_cannot_create_temporary_objects(
    api_pool: Pool, tenant_a: SeededCompany, principal: str
) -> None:
    who = Principal.anonymous() if principal == "anon" else tenant_a.member
    async with attacker(api_pool, who) as conn:
        error = await refused(conn, "CREATE DOMAIN pg_temp.uuid AS text CHECK (VALUE <> '')")
        assert isinstance(error, errors.InsufficientPrivilege)
        error = await refused(conn, "CREATE TEMPORARY TABLE t (x int)")
        assert isinstance(error, errors.InsufficientPrivilege)


def test_public_has_no_temporary_privilege(owner_conn: psycopg.Connection) -> None:
    row = owner_conn.execute(
        "SELECT has_database_privilege(r, current_database(), 'TEMPORARY')"
        " FROM unnest(ARRAY['anon', 'authenticated', 'service_role', 'authenticator']) r"
    ).fetchall()
    assert row == [(False,)] * 4
    acl = owner_conn.execute(
        "SELECT a.privilege_type FROM pg_database d, aclexplode(d.datacl) a"
        " WHERE d.datname = current_database() AND a.grantee = 0"  # PUBLIC
    ).fetchall()
    assert ("TEMPORARY",) not in acl


def test_every_security_definer_function_puts_pg_temp_last(
    owner_conn: psycopg.Connection,
) -> None:
    """The class guard: a definer function added later without the setting fails here."""
    definers = owner_conn.execute(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    assert len(definers) >= 17
    wrong = [
        (name, config)
        for name, config in definers
        if "search_path=pg_catalog, pg_temp" not in (config or [])
    ]
    assert wrong == []


def test_definer_functions_are_not_owned_by_a_superuser(owner_conn: psycopg.Connection) -> None:
    owners = owner_conn.execute(
        "SELECT p.oid::regprocedure::text, r.rolname, r.rolsuper FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner"
        " WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    assert {(name, owner, superuser) for name, owner, superuser in owners if superuser} == set()
    assert {owner for _, owner, _ in owners} == {"syntera_definer"}


def test_a_temporary_type_does_not_shadow_inside_a_definer(
    owner_conn: psycopg.Connection, tenant_a: SeededCompany
) -> None:
    """Even a role that may create temporary objects (here the owner) cannot shadow a
    type inside a definer function: pg_temp is searched last, after pg_catalog."""
    with owner_conn.transaction(force_rollback=True):
        owner_conn.execute("CREATE DOMAIN pg_temp.uuid AS text CHECK (VALUE IS NULL)")
        owner_conn.execute(
            "SELECT set_config('request.jwt.claim.sub', %s, true)", (str(tenant_a.owner.user_id),)
        )
        row = owner_conn.execute("SELECT private.lookup_company_id()").fetchone()
    assert row == (tenant_a.company_id,)


# --- 2. the API's login and service_role -------------------------------------------------------


def test_the_api_login_cannot_become_the_system(owner_conn: psycopg.Connection) -> None:
    [(member,)] = owner_conn.execute(
        "SELECT pg_has_role('authenticator', 'service_role', 'MEMBER')"
    ).fetchall()
    assert member is False


async def test_a_members_transaction_cannot_name_service_role(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    async with attacker(api_pool, tenant_a.member) as conn:
        for attempt in (
            "SELECT set_config('role', 'service_role', true)",
            "SET LOCAL ROLE service_role",
        ):
            error = await refused(conn, attempt)
            assert isinstance(error, errors.InsufficientPrivilege)


async def test_the_system_runs_on_its_own_login(api_pool: Pool, tenant_a: SeededCompany) -> None:
    async with transaction_as(api_pool, Principal.service()) as conn:
        who = await rows(conn, "SELECT session_user AS login, current_user AS role")
    assert who == [{"login": "syntera_system", "role": "service_role"}]
    async with transaction_as(api_pool, tenant_a.member) as conn:
        who = await rows(conn, "SELECT session_user AS login, current_user AS role")
    assert who == [{"login": "authenticator", "role": "authenticated"}]


# --- 3. request.membership is not trusted -----------------------------------------------------


async def test_a_forged_membership_setting_gives_nothing(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    own = tenant_a.member.user_id
    forged = f"{own}:{tenant_b.company_id}:owner"
    async with attacker(api_pool, tenant_a.member) as conn:
        await conn.execute("SELECT set_config('request.membership', %s, true)", (forged,))
        contacts = await rows(conn, "SELECT company_id FROM public.contacts")
        assert {row["company_id"] for row in contacts} == {tenant_a.company_id}
        prompts = await rows(
            conn,
            "SELECT system_prompt FROM public.agent_configs WHERE company_id = %s",
            (tenant_b.company_id,),
        )
        assert prompts == []
        helpers = await rows(
            conn,
            "SELECT private.current_company_id() AS company, private.current_member_role() AS r",
        )
        assert helpers == [{"company": tenant_a.company_id, "r": "user"}]
        invite = await refused(
            conn,
            "INSERT INTO public.invitations (company_id, email, role, invited_by)"
            " VALUES (%s, 'mole@example.com', 'admin', %s)",
            (tenant_b.company_id, own),
        )
        assert isinstance(invite, errors.InsufficientPrivilege)
        remove = await refused(
            conn, "SELECT public.remove_team_member(%s)", (tenant_b.admin.user_id,)
        )
        assert isinstance(remove, errors.InsufficientPrivilege)
        deleted = await conn.execute(
            "DELETE FROM public.companies WHERE id = %s", (tenant_b.company_id,)
        )
        assert deleted.rowcount == 0


# Settings a definer function or policy may read: the verified claims (set with the role,
# by the code that checked the token), the role itself (set only by SET ROLE, which needs
# membership in it), and the workflow loop guard (a company can only slow its own runs).
TRUSTED_SETTINGS = {
    "request.jwt.claim.sub",
    "request.jwt.claims",
    "role",
    "syntera.workflow_depth",
    "syntera.workflow_execution",
}


def test_policies_and_helpers_read_no_forgeable_setting(owner_conn: psycopg.Connection) -> None:
    """The class guard: no policy and no function of ``private`` or a definer reads a
    setting a transaction could forge to change what it may reach."""
    texts = owner_conn.execute(
        "SELECT p.oid::regprocedure::text, p.prosrc FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE (n.nspname = 'private' OR p.prosecdef)"
        "   AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " UNION ALL SELECT policyname, coalesce(qual, '') || coalesce(with_check, '')"
        " FROM pg_policies"
    ).fetchall()
    assert len(texts) > 50
    read = {
        (name, setting)
        for name, text in texts
        for setting in re.findall(r"current_setting\('([^']+)'", text)
    }
    assert {(name, s) for name, s in read if s not in TRUSTED_SETTINGS} == set()


# --- the column map: what members may write (causes 4, 5, 7 and the class) ---------------------


def column_map(owner_conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    rows = owner_conn.execute(
        "SELECT table_name, column_name, written_by FROM syntera.column_access"
    ).fetchall()
    return {(table, column): written_by for table, column, written_by in rows}


def test_every_column_of_public_is_in_the_map(owner_conn: psycopg.Connection) -> None:
    """A table or column added later without saying who writes it fails here."""
    columns = {
        (table, column)
        for table, column in owner_conn.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
            "   AND a.attnum > 0 AND NOT a.attisdropped"
        ).fetchall()
    }
    assert columns == set(column_map(owner_conn))


def test_the_privileges_follow_the_map(owner_conn: psycopg.Connection) -> None:
    wrong = []
    for (table, column), written_by in column_map(owner_conn).items():
        for role in ("authenticated", "anon"):
            for command, allowed in (
                ("INSERT", {"client", "client_insert"}),
                ("UPDATE", {"client", "client_update"}),
            ):
                [(has,)] = owner_conn.execute(
                    "SELECT has_column_privilege(%s, %s, %s, %s)",
                    (role, f"public.{table}", column, command),
                ).fetchall()
                if has != (role == "authenticated" and written_by in allowed):
                    wrong.append((role, command, table, column, written_by))
    assert wrong == []


async def test_a_member_writes_no_system_column(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany
) -> None:
    """Each system column, by INSERT and by UPDATE, as the company's owner (the member
    with the most rights): refused before any row is looked at."""
    writes = []
    for (table, column), written_by in sorted(column_map(owner_conn).items()):
        target = sql.SQL("public.{}").format(sql.Identifier(table))
        col = sql.Identifier(column)
        if written_by in ("system", "client_update"):
            writes.append(
                sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {t} WHERE false").format(
                    t=target, c=col
                )
            )
        if written_by in ("system", "client_insert"):
            writes.append(sql.SQL("UPDATE {t} SET {c} = {c} WHERE false").format(t=target, c=col))
    assert len(writes) > 150
    async with attacker(api_pool, tenant_a.owner) as conn:
        for write in writes:
            error = await refused(conn, write)
            # A generated column is refused to everyone, before privileges are checked.
            expected = (errors.InsufficientPrivilege, errors.GeneratedAlways)
            assert isinstance(error, expected), write.as_string()


def test_clients_never_choose_an_id(owner_conn: psycopg.Connection) -> None:
    """No lookup by id alone can see two companies' rows: on every table keyed by
    (company_id, id), and on companies, only the system writes id (it is generated)."""
    keyed = owner_conn.execute(
        "SELECT c.conrelid::regclass::text FROM pg_constraint c"
        " WHERE c.contype = 'p' AND c.connamespace = 'public'::regnamespace"
        "   AND array_length(c.conkey, 1) = 2"
        "   AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a"
        "         WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey))"
        "       = ARRAY['company_id', 'id']"
    ).fetchall()
    tables = {name.removeprefix("public.") for (name,) in keyed} | {"companies"}
    assert len(tables) >= 14
    access = column_map(owner_conn)
    assert {table: access[(table, "id")] for table in tables} == dict.fromkeys(tables, "system")


async def test_a_company_id_cannot_be_chosen(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany
) -> None:
    """Neither a live company's id (the old "duplicate key" oracle) nor a new one."""
    loner = Principal.user(create_auth_user(owner_conn))
    async with attacker(api_pool, loner) as conn:
        for company_id in (tenant_a.company_id, uuid.uuid4()):
            error = await refused(
                conn,
                "INSERT INTO public.companies (id, name, owner_id) VALUES (%s, 'Mine', %s)",
                (company_id, loner.user_id),
            )
            assert isinstance(error, errors.InsufficientPrivilege)


async def test_rows_cannot_take_another_companys_id(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    async with attacker(api_pool, tenant_a.owner) as conn:
        for statement in (
            "INSERT INTO public.workflows (id, company_id, name, trigger_type)"
            " VALUES (%(workflows)s, %(company_id)s, 'W', 'webhook')",
            "INSERT INTO public.invitations (id, company_id, email, invited_by)"
            " VALUES (%(invitations)s, %(company_id)s, 'x@example.com', %(owner)s)",
            "INSERT INTO public.contacts (id, company_id) VALUES (%(contacts)s, %(company_id)s)",
        ):
            params = {
                **tenant_b.rows,
                "company_id": tenant_a.company_id,
                "owner": tenant_a.owner.user_id,
            }
            error = await refused(conn, statement, params)
            assert isinstance(error, errors.InsufficientPrivilege)


# --- 7. another company's file --------------------------------------------------------------


async def test_a_member_cannot_point_a_document_at_another_companys_file(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    [(their_path,)] = owner_conn.execute(
        "SELECT file_path FROM public.knowledge_base_documents WHERE company_id = %s AND id = %s",
        (tenant_b.company_id, tenant_b.rows["knowledge_base_documents"]),
    ).fetchall()
    async with attacker(api_pool, tenant_a.member) as conn:
        error = await refused(
            conn,
            "INSERT INTO public.knowledge_base_documents (company_id, name, file_path)"
            " VALUES (%s, 'Stolen', %s)",
            (tenant_a.company_id, their_path),
        )
        assert isinstance(error, errors.InsufficientPrivilege)
        for assignment in ("file_path = %s", "status = 'pending'", "chunk_count = 0"):
            error = await refused(
                conn,
                sql.SQL("UPDATE public.knowledge_base_documents SET {} WHERE id = %s").format(
                    sql.SQL(assignment)  # type: ignore[arg-type]
                ),
                (their_path, tenant_a.rows["knowledge_base_documents"])
                if "%s" in assignment
                else (tenant_a.rows["knowledge_base_documents"],),
            )
            assert isinstance(error, errors.InsufficientPrivilege)
        # The database names the path; a name that climbs out is refused.
        queued = await rows(
            conn,
            "SELECT id, file_path FROM public.queue_document(%s, 'Doc', NULL, 'faq.md',"
            " 'text/markdown', 10)",
            (tenant_a.company_id,),
        )
        assert queued[0]["file_path"] == f"{tenant_a.company_id}/{queued[0]['id']}/faq.md"
        for name in ("../x", "a/b", ".hidden", ""):
            error = await refused(
                conn,
                "SELECT public.queue_document(%s, 'Doc', NULL, %s, 'text/plain', 1)",
                (tenant_a.company_id, name),
            )
            assert isinstance(error, errors.InvalidParameterValue), name
        error = await refused(
            conn,
            "SELECT public.queue_document(%s, 'Doc', NULL, 'x.md', 'text/plain', 1)",
            (tenant_b.company_id,),
        )
        assert isinstance(error, errors.InsufficientPrivilege)
        requeued = await rows(
            conn,
            "SELECT * FROM public.reprocess_document(%s, %s)",
            (tenant_b.company_id, tenant_b.rows["knowledge_base_documents"]),
        )
        assert requeued == []


# --- 6. widget keys ---------------------------------------------------------------------------


AGENT_BY_KEY = (
    "SELECT a.company_id, a.id FROM syntera.widget_keys k JOIN public.agent_configs a"
    " ON a.company_id = k.company_id AND a.id = k.agent_id"
    " WHERE k.digest = encode(sha256(convert_to(%s, 'UTF8')), 'hex')"
)


async def test_a_member_cannot_take_another_companys_widget_key(
    api_pool: Pool, tenant_a: SeededCompany, make_tenant: MakeTenant
) -> None:
    victim = await make_tenant()
    async with transaction_as(api_pool, victim.member) as conn:
        [issued] = await rows(
            conn,
            "SELECT public.issue_widget_key(%s, %s) AS key",
            (victim.company_id, victim.rows["agent_configs"]),
        )
    key = issued["key"]
    assert key.startswith("pub_key_")
    assert len(key) >= 40
    async with attacker(api_pool, tenant_a.member) as conn:
        # Their digest, which their web page lets anyone compute, written on our agent:
        error = await refused(
            conn,
            "UPDATE public.agent_configs"
            " SET public_api_key = encode(sha256(convert_to(%s, 'UTF8')), 'hex') WHERE id = %s",
            (key, tenant_a.rows["agent_configs"]),
        )
        assert isinstance(error, errors.InsufficientPrivilege)
        # Nor can a member issue a key for their agent.
        stolen = await rows(
            conn,
            "SELECT public.issue_widget_key(%s, %s) AS key",
            (victim.company_id, victim.rows["agent_configs"]),
        )
        assert stolen == [{"key": None}]
    async with attacker(api_pool, Principal.service()) as conn:
        assert await rows(conn, AGENT_BY_KEY, (key,)) == [
            {"company_id": victim.company_id, "id": victim.rows["agent_configs"]}
        ]
        # Even the system cannot give a second agent the same digest.
        error = await refused(
            conn,
            "UPDATE public.agent_configs"
            " SET public_api_key = encode(sha256(convert_to(%s, 'UTF8')), 'hex')"
            " WHERE company_id = %s AND id = %s",
            (key, tenant_a.company_id, tenant_a.rows["agent_configs"]),
        )
        assert isinstance(error, errors.UniqueViolation)


# --- 4. a deleted company's id ----------------------------------------------------------------


async def test_a_deleted_companys_id_is_never_used_again(
    api_pool: Pool, owner_conn: psycopg.Connection, make_tenant: MakeTenant
) -> None:
    doomed = await make_tenant()
    async with transaction_as(api_pool, doomed.owner) as conn:
        await conn.execute("DELETE FROM public.companies WHERE id = %s", (doomed.company_id,))
    newcomer = create_auth_user(owner_conn)
    async with attacker(api_pool, Principal.user(newcomer)) as conn:
        error = await refused(
            conn,
            "INSERT INTO public.companies (id, name, owner_id) VALUES (%s, 'Reborn', %s)",
            (doomed.company_id, newcomer),
        )
        assert isinstance(error, errors.InsufficientPrivilege)
    # Not even the system, while the purge is pending or after.
    async with attacker(api_pool, Principal.service()) as conn:
        error = await refused(
            conn,
            "INSERT INTO public.companies (id, name) VALUES (%s, 'Reborn')",
            (doomed.company_id,),
        )
        assert isinstance(error, errors.UniqueViolation)
        assert "deleted company" in str(error)


# --- 8. references that cross companies ---------------------------------------------------------


async def test_rows_name_only_their_own_companys_users(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    """Another company's user and a user who does not exist get the same answer."""
    strangers = [tenant_b.member.user_id, uuid.uuid4()]
    answers = []
    async with attacker(api_pool, tenant_a.owner) as conn:
        for stranger in strangers:
            error = await refused(
                conn,
                "INSERT INTO public.workflows (company_id, name, trigger_type, created_by)"
                " VALUES (%s, 'W', 'webhook', %s)",
                (tenant_a.company_id, stranger),
            )
            assert isinstance(error, errors.ForeignKeyViolation)
            answers.append((error.diag.message_primary, error.diag.column_name))
        assert (
            answers[0] == answers[1] == ("created_by is not a member of the company", "created_by")
        )
        # Into another company: the same refusal whether or not the user belongs to it.
        for stranger in (tenant_b.owner.user_id, uuid.uuid4()):
            error = await refused(
                conn,
                "INSERT INTO public.invitations (company_id, email, invited_by)"
                " VALUES (%s, 'mole@example.com', %s)",
                (tenant_b.company_id, stranger),
            )
            assert isinstance(error, errors.InsufficientPrivilege)
        error = await refused(
            conn,
            "UPDATE public.invitations SET invited_by = %s WHERE id = %s",
            (strangers[0], tenant_a.rows["invitations"]),
        )
        assert isinstance(error, errors.InsufficientPrivilege)
        own = await rows(
            conn,
            "INSERT INTO public.workflows (company_id, name, trigger_type, created_by)"
            " VALUES (%s, 'W', 'webhook', %s) RETURNING created_by",
            (tenant_a.company_id, tenant_a.admin.user_id),
        )
        assert own == [{"created_by": tenant_a.admin.user_id}]
    async with attacker(api_pool, Principal.service()) as conn:
        error = await refused(
            conn,
            "INSERT INTO public.notifications (company_id, user_id, type, title)"
            " VALUES (%s, %s, 'x', 'y')",
            (tenant_a.company_id, tenant_b.member.user_id),
        )
        assert isinstance(error, errors.ForeignKeyViolation)


# --- also: statistics, notifications, the system's functions ------------------------------------


@pytest.mark.parametrize("principal", ["anon", "authenticated", "service_role"])
async def test_statement_statistics_are_not_readable_by_api_roles(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany, principal: str
) -> None:
    if owner_conn.execute("SELECT to_regclass('public.pg_stat_statements')").fetchone() == (None,):
        pytest.skip("pg_stat_statements is not installed here")
    who = {
        "anon": Principal.anonymous(),
        "authenticated": tenant_a.member,
        "service_role": Principal.service(),
    }[principal]
    async with attacker(api_pool, who) as conn:
        error = await refused(conn, "SELECT query FROM public.pg_stat_statements LIMIT 1")
        assert isinstance(error, errors.InsufficientPrivilege)


def test_purge_notifications_name_no_company(
    database: StackDatabase, owner_conn: psycopg.Connection, tenant_a: SeededCompany
) -> None:
    with psycopg.connect(database.api_url, autocommit=True) as listener:
        listener.execute("SET ROLE authenticated")
        listener.execute("LISTEN syntera_purges")
        with owner_conn.transaction():
            owner_conn.execute(
                "INSERT INTO public.contacts (company_id, email) VALUES (%s, 'x@example.com')",
                (tenant_a.company_id,),
            )
            company = owner_conn.execute(
                "INSERT INTO public.companies (name) VALUES ('Short-lived') RETURNING id"
            ).fetchone()
            assert company is not None
            owner_conn.execute("DELETE FROM public.companies WHERE id = %s", company)
        heard = list(listener.notifies(timeout=2, stop_after=1))
    assert [notice.payload for notice in heard] == [""]


async def test_claims_cannot_make_a_member_the_system(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    """erase_contact() and company_purge() ask the current role, not the claims."""
    purge = owner_conn.execute(
        "INSERT INTO syntera.purges (kind, company_id, contact_id) VALUES ('contact', %s, %s)"
        " RETURNING id",
        (tenant_b.company_id, uuid.uuid4()),
    ).fetchone()
    assert purge is not None
    forged = Principal.user(tenant_a.member.user_id, role="service_role")
    async with attacker(api_pool, forged) as conn:
        error = await refused(
            conn,
            "SELECT public.erase_contact(%s, %s)",
            (tenant_b.company_id, tenant_b.rows["contacts"]),
        )
        assert isinstance(error, errors.InsufficientPrivilege)
        purges = await rows(
            conn, "SELECT * FROM public.company_purge(%s, %s)", (tenant_b.company_id, purge[0])
        )
        assert purges == []
    async with attacker(api_pool, Principal.service()) as conn:
        purges = await rows(
            conn, "SELECT id FROM public.company_purge(%s, %s)", (tenant_b.company_id, purge[0])
        )
        assert purges == [{"id": purge[0]}]


def test_policies_read_the_membership_view_not_a_helper_function(
    owner_conn: psycopg.Connection,
) -> None:
    """A helper function in a policy is called in every statement (it cannot be inlined);
    the view's sub-select is planned in: 1.1x rather than 1.6x the cost of an explicit
    filter inside PostgreSQL (migration 024, bench/rls.py)."""
    policies = owner_conn.execute(
        "SELECT policyname, coalesce(qual, '') || coalesce(with_check, '') FROM pg_policies"
        " WHERE schemaname = 'public'"
    ).fetchall()
    assert [name for name, text in policies if "private.current_" in text] == []
    assert sum("private.caller_membership" in text for _, text in policies) >= 40
