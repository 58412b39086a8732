"""Row-level security: what each principal can see and change, table by table.

Every business table gets the same four questions (SELECT, INSERT, UPDATE, DELETE) from a
user of another company, from `anon`, and from `service_role`.
"""

from __future__ import annotations

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
from tests.factories import SeededCompany, create_auth_user, invite_and_sign_up

Pool = AsyncConnectionPool[TenantConnection]

BUSINESS_TABLES = [
    "companies",
    "users",
    "invitations",
    "agent_configs",
    "contacts",
    "deals",
    "knowledge_base_documents",
    "knowledge_base_chunks",
    "workflows",
    "workflow_executions",
    "workflow_events",
    "call_recordings",
    "call_history",
    "analytics_events",
    "notifications",
    "message_search",
    "saved_replies",
]

# Tables whose rows every member manages: (table, insert columns and values, a harmless
# update). Values may name rows of the tenant as %(table)s.
MEMBER_TABLES: dict[str, tuple[str, str]] = {
    "agent_configs": (
        "(company_id, name, system_prompt) VALUES (%(company_id)s, 'X', 'Y')",
        "name = 'renamed'",
    ),
    "contacts": ("(company_id, email) VALUES (%(company_id)s, 'x@example.com')", "phone = '1'"),
    "deals": ("(company_id, title) VALUES (%(company_id)s, 'Deal')", "probability = 50"),
    "knowledge_base_documents": (
        "(company_id, name, file_path) VALUES (%(company_id)s, 'Doc', 'kb/x')",
        "name = 'renamed'",
    ),
    "call_recordings": (
        "(company_id, recording_url) VALUES (%(company_id)s, 'rec/x.wav')",
        "transcript = 'hi'",
    ),
    "call_history": (
        "(company_id, direction) VALUES (%(company_id)s, 'outbound')",
        "to_number = '+100'",
    ),
    "saved_replies": (
        "(company_id, shortcut, content) VALUES (%(company_id)s, 'x', 'Hello')",
        "content = 'Hi'",
    ),
}

# Members create documents only through public.queue_document() (migration 018: the
# file's path is the system's), never by INSERT.
INSERTED_BY_MEMBERS = sorted(set(MEMBER_TABLES) - {"knowledge_base_documents"})

# Only the system (service_role) reads or writes these; API users have no privilege at all.
SYSTEM_ONLY = {"workflow_events"}

# Tables where every member sees exactly their company's rows; the others have rules of
# their own (own company, self and teammates, owner/admin only, own notifications).
TENANT_ROW_TABLES = [
    table
    for table in BUSINESS_TABLES
    if table not in {"companies", "users", "invitations", "notifications", *SYSTEM_ONLY}
    # Rows only the messages' writes make: tests/conversations/test_search.py.
    and table != "message_search"
]


@asynccontextmanager
async def rolled_back(pool: Pool, principal: Principal) -> AsyncIterator[TenantConnection]:
    """Like transaction_as, but never commits: the database is left as it was."""
    async with (
        pool_for(pool, principal).connection() as conn,
        conn.transaction(force_rollback=True),
    ):
        await become(conn, principal)
        yield conn


async def select_ids(pool: Pool, principal: Principal, table: str) -> set[uuid.UUID]:
    async with rolled_back(pool, principal) as conn:
        query = sql.SQL("SELECT id FROM public.{}").format(sql.Identifier(table))
        rows = await (await conn.execute(query)).fetchall()
    return {row["id"] for row in rows}


async def execute(pool: Pool, principal: Principal, query: Any, params: Any = None) -> int:
    """Run one statement as ``principal``; return the number of rows it affected."""
    async with rolled_back(pool, principal) as conn:
        cursor = await conn.execute(query, params)
        return cursor.rowcount


# --- SELECT ------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TENANT_ROW_TABLES)
async def test_member_sees_only_own_company_rows(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany, table: str
) -> None:
    assert await select_ids(api_pool, tenant_a.member, table) == {tenant_a.rows[table]}
    assert await select_ids(api_pool, tenant_b.member, table) == {tenant_b.rows[table]}


async def test_member_sees_only_own_company(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    assert await select_ids(api_pool, tenant_a.member, "companies") == {tenant_a.company_id}


async def test_member_sees_self_and_teammates_only(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    team_a = {tenant_a.owner.user_id, tenant_a.admin.user_id, tenant_a.member.user_id}
    assert await select_ids(api_pool, tenant_a.member, "users") == team_a


async def test_notifications_are_visible_to_their_user_only(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    notification = tenant_a.rows["notifications"]
    assert await select_ids(api_pool, tenant_a.member, "notifications") == {notification}
    assert await select_ids(api_pool, tenant_a.owner, "notifications") == set()
    assert await select_ids(api_pool, tenant_b.member, "notifications") == {
        tenant_b.rows["notifications"]
    }


async def test_invitations_are_visible_to_owners_and_admins_only(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    invitation = tenant_a.rows["invitations"]
    assert invitation in await select_ids(api_pool, tenant_a.owner, "invitations")
    assert invitation in await select_ids(api_pool, tenant_a.admin, "invitations")
    assert await select_ids(api_pool, tenant_a.member, "invitations") == set()
    assert invitation not in await select_ids(api_pool, tenant_b.owner, "invitations")


@pytest.mark.parametrize("table", BUSINESS_TABLES)
async def test_anon_sees_nothing(api_pool: Pool, tenant_a: SeededCompany, table: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        await select_ids(api_pool, Principal.anonymous(), table)


@pytest.mark.parametrize("table", BUSINESS_TABLES)
async def test_user_without_company_sees_nothing_of_others(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany, table: str
) -> None:
    loner = Principal.user(create_auth_user(owner_conn))
    if table in SYSTEM_ONLY:
        with pytest.raises(errors.InsufficientPrivilege):
            await select_ids(api_pool, loner, table)
        return
    visible = await select_ids(api_pool, loner, table)
    assert visible <= {loner.user_id}  # at most their own users row


@pytest.mark.parametrize("table", [*TENANT_ROW_TABLES, "notifications", "invitations"])
async def test_service_role_sees_every_company(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany, table: str
) -> None:
    visible = await select_ids(api_pool, Principal.service(), table)
    assert {tenant_a.rows[table], tenant_b.rows[table]} <= visible


# --- INSERT ------------------------------------------------------------------------------


def insert_statement(table: str) -> sql.Composed:
    columns_and_values, _ = MEMBER_TABLES[table]
    return sql.SQL("INSERT INTO public.{} ").format(sql.Identifier(table)) + sql.SQL(
        columns_and_values  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("table", INSERTED_BY_MEMBERS)
async def test_member_creates_rows_in_own_company(
    api_pool: Pool, tenant_a: SeededCompany, table: str
) -> None:
    statement = insert_statement(table)
    assert (
        await execute(api_pool, tenant_a.member, statement, {"company_id": tenant_a.company_id})
        == 1
    )


@pytest.mark.parametrize("table", [*sorted(MEMBER_TABLES), "workflows", "analytics_events"])
async def test_user_cannot_create_rows_in_another_company(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany, table: str
) -> None:
    if table == "workflows":
        statement = sql.SQL(
            "INSERT INTO public.workflows (company_id, name, trigger_type)"
            " VALUES (%(company_id)s, 'W', 'webhook')"
        )
    elif table == "analytics_events":
        statement = sql.SQL(
            "INSERT INTO public.analytics_events (company_id, event_type)"
            " VALUES (%(company_id)s, 'page.view')"
        )
    else:
        statement = insert_statement(table)
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(api_pool, tenant_a.owner, statement, {"company_id": tenant_b.company_id})


@pytest.mark.parametrize(
    ("table", "statement"),
    [
        (
            "deals",
            "INSERT INTO public.deals (company_id, contact_id, title)"
            " VALUES (%(company_id)s, %(contacts)s, 'Steal')",
        ),
        (
            "knowledge_base_documents",
            "INSERT INTO public.knowledge_base_documents (company_id, agent_id, name, file_path)"
            " VALUES (%(company_id)s, %(agent_configs)s, 'Doc', 'kb/x')",
        ),
        (
            "call_recordings",
            "INSERT INTO public.call_recordings (company_id, contact_id, recording_url)"
            " VALUES (%(company_id)s, %(contacts)s, 'rec/x')",
        ),
        (
            "call_history",
            "INSERT INTO public.call_history (company_id, recording_id, direction)"
            " VALUES (%(company_id)s, %(call_recordings)s, 'inbound')",
        ),
        (
            "analytics_events",
            "INSERT INTO public.analytics_events (company_id, event_type, agent_id)"
            " VALUES (%(company_id)s, 'x', %(agent_configs)s)",
        ),
    ],
)
async def test_rows_cannot_reference_another_company(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany, table: str, statement: str
) -> None:
    params = {"company_id": tenant_a.company_id, **tenant_b.rows}
    for principal in (tenant_a.owner, Principal.service()):
        expected: type[psycopg.Error] = errors.ForeignKeyViolation
        if table == "knowledge_base_documents" and principal.role == "authenticated":
            expected = errors.InsufficientPrivilege  # members do not insert documents
        with pytest.raises(expected):
            await execute(api_pool, principal, statement, params)


async def test_service_role_cannot_run_a_workflow_of_another_company(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    with pytest.raises(errors.ForeignKeyViolation):
        await execute(
            api_pool,
            Principal.service(),
            "INSERT INTO public.workflow_executions (company_id, workflow_id, trigger_type)"
            " VALUES (%s, %s, 'webhook')",
            (tenant_a.company_id, tenant_b.rows["workflows"]),
        )


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO public.workflow_executions (company_id, workflow_id, trigger_type)"
        " VALUES (%(company_id)s, %(workflows)s, 'webhook')",
        "INSERT INTO public.notifications (company_id, user_id, type, title)"
        " VALUES (%(company_id)s, %(user_id)s, 'x', 'y')",
    ],
)
async def test_system_only_tables_reject_member_writes(
    api_pool: Pool, tenant_a: SeededCompany, statement: str
) -> None:
    params = {"company_id": tenant_a.company_id, "user_id": tenant_a.owner.user_id, **tenant_a.rows}
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(api_pool, tenant_a.owner, statement, params)
    assert await execute(api_pool, Principal.service(), statement, params) == 1


async def test_analytics_event_cannot_name_another_user(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    statement = (
        "INSERT INTO public.analytics_events (company_id, event_type, user_id) VALUES (%s, 'x', %s)"
    )
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(
            api_pool, tenant_a.member, statement, (tenant_a.company_id, tenant_a.owner.user_id)
        )
    own = (tenant_a.company_id, tenant_a.member.user_id)
    assert await execute(api_pool, tenant_a.member, statement, own) == 1


# --- UPDATE and DELETE -------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(MEMBER_TABLES))
async def test_user_cannot_change_or_delete_rows_of_another_company(
    api_pool: Pool,
    owner_conn: psycopg.Connection,
    tenant_a: SeededCompany,
    tenant_b: SeededCompany,
    table: str,
) -> None:
    _, assignment = MEMBER_TABLES[table]
    target = tenant_b.rows[table]
    update = sql.SQL("UPDATE public.{} SET {} WHERE id = %s").format(
        sql.Identifier(table),
        sql.SQL(assignment),  # type: ignore[arg-type]
    )
    delete = sql.SQL("DELETE FROM public.{} WHERE id = %s").format(sql.Identifier(table))
    assert await execute(api_pool, tenant_a.owner, update, (target,)) == 0
    assert await execute(api_pool, tenant_a.owner, delete, (target,)) == 0
    # ... while the same statements work on the tenant's own row.
    own = tenant_b.rows[table]
    assert await execute(api_pool, tenant_b.member, update, (own,)) == 1
    assert await execute(api_pool, tenant_b.member, delete, (own,)) == 1


@pytest.mark.parametrize("table", sorted(MEMBER_TABLES))
async def test_user_cannot_move_a_row_into_another_company(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany, table: str
) -> None:
    move = sql.SQL("UPDATE public.{} SET company_id = %s WHERE id = %s").format(
        sql.Identifier(table)
    )
    with pytest.raises((errors.InsufficientPrivilege, errors.ForeignKeyViolation)):
        await execute(api_pool, tenant_a.owner, move, (tenant_b.company_id, tenant_a.rows[table]))


@pytest.mark.parametrize(
    ("table", "principal_name"),
    [
        ("workflows", "owner"),
        ("workflow_executions", "owner"),
        ("analytics_events", "owner"),
        ("notifications", "member"),
        ("invitations", "owner"),
    ],
)
async def test_other_company_cannot_delete_special_tables(
    api_pool: Pool,
    tenant_a: SeededCompany,
    tenant_b: SeededCompany,
    table: str,
    principal_name: str,
) -> None:
    principal: Principal = getattr(tenant_a, principal_name)
    delete = sql.SQL("DELETE FROM public.{} WHERE id = %s").format(sql.Identifier(table))
    try:
        affected = await execute(api_pool, principal, delete, (tenant_b.rows[table],))
    except errors.InsufficientPrivilege:
        affected = 0
    assert affected == 0


# --- roles inside a company ---------------------------------------------------------------


WORKFLOW_INSERT = (
    "INSERT INTO public.workflows (company_id, name, trigger_type) VALUES (%s, 'W', 'webhook')"
)


async def test_plain_member_cannot_create_change_or_delete_workflows(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(api_pool, tenant_a.member, WORKFLOW_INSERT, (tenant_a.company_id,))
    workflow = tenant_a.rows["workflows"]
    update = "UPDATE public.workflows SET enabled = false WHERE id = %s"
    delete = "DELETE FROM public.workflows WHERE id = %s"
    assert await execute(api_pool, tenant_a.member, update, (workflow,)) == 0
    assert await execute(api_pool, tenant_a.member, delete, (workflow,)) == 0
    for manager in (tenant_a.owner, tenant_a.admin):
        assert await execute(api_pool, manager, WORKFLOW_INSERT, (tenant_a.company_id,)) == 1
        assert await execute(api_pool, manager, update, (workflow,)) == 1


async def test_only_the_owner_deletes_the_company(api_pool: Pool, tenant_a: SeededCompany) -> None:
    delete = "DELETE FROM public.companies WHERE id = %s"
    assert await execute(api_pool, tenant_a.member, delete, (tenant_a.company_id,)) == 0
    assert await execute(api_pool, tenant_a.admin, delete, (tenant_a.company_id,)) == 0
    assert await execute(api_pool, tenant_a.owner, delete, (tenant_a.company_id,)) == 1


async def test_other_company_cannot_rename_or_delete_a_company(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    rename = "UPDATE public.companies SET name = 'mine' WHERE id = %s"
    delete = "DELETE FROM public.companies WHERE id = %s"
    assert await execute(api_pool, tenant_a.owner, rename, (tenant_b.company_id,)) == 0
    assert await execute(api_pool, tenant_a.owner, delete, (tenant_b.company_id,)) == 0


async def test_owner_and_admin_rename_the_company_a_member_cannot(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    rename = "UPDATE public.companies SET name = 'Renamed' WHERE id = %s"
    assert await execute(api_pool, tenant_a.member, rename, (tenant_a.company_id,)) == 0
    assert await execute(api_pool, tenant_a.admin, rename, (tenant_a.company_id,)) == 1


@pytest.mark.parametrize(
    "assignment", ["owner_id = auth.uid()", "subscription_tier = 'enterprise'"]
)
async def test_admin_cannot_change_the_company_owner_or_tier(
    api_pool: Pool, tenant_a: SeededCompany, assignment: str
) -> None:
    statement = sql.SQL("UPDATE public.companies SET {} WHERE id = %s").format(sql.SQL(assignment))
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(api_pool, tenant_a.admin, statement, (tenant_a.company_id,))


async def test_inserting_a_company_makes_the_inserter_its_owner(
    api_pool: Pool, owner_conn: psycopg.Connection
) -> None:
    founder = Principal.user(create_auth_user(owner_conn))
    async with rolled_back(api_pool, founder) as conn:
        cursor = await conn.execute(
            "INSERT INTO public.companies (name) VALUES ('New') RETURNING id, owner_id"
        )
        company = await cursor.fetchone()
        assert company is not None
        assert company["owner_id"] == founder.user_id
        me = await (
            await conn.execute("SELECT company_id, role FROM public.users WHERE id = auth.uid()")
        ).fetchone()
        assert me == {"company_id": company["id"], "role": "owner"}


async def test_nobody_else_can_be_made_owner_of_a_new_company(
    api_pool: Pool, owner_conn: psycopg.Connection
) -> None:
    founder = Principal.user(create_auth_user(owner_conn))
    victim = create_auth_user(owner_conn)
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(
            api_pool,
            founder,
            "INSERT INTO public.companies (name, owner_id) VALUES ('X', %s)",
            (victim,),
        )


async def test_a_member_cannot_create_a_second_company(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(api_pool, tenant_a.member, "INSERT INTO public.companies (name) VALUES ('2')")


# --- privilege escalation on users --------------------------------------------------------


async def role_of(owner_conn: psycopg.Connection, user_id: uuid.UUID | None) -> tuple[Any, ...]:
    row = owner_conn.execute(
        "SELECT company_id, role FROM public.users WHERE id = %s", (user_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("new_role", ["admin", "owner"])
async def test_plain_user_cannot_raise_their_own_role(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany, new_role: str
) -> None:
    before = await role_of(owner_conn, tenant_a.member.user_id)
    statement = "UPDATE public.users SET role = %s WHERE id = auth.uid()"
    assert await execute(api_pool, tenant_a.member, statement, (new_role,)) == 0
    assert await role_of(owner_conn, tenant_a.member.user_id) == before


async def test_admin_cannot_change_their_own_role(api_pool: Pool, tenant_a: SeededCompany) -> None:
    statement = "UPDATE public.users SET role = 'owner' WHERE id = auth.uid()"
    with pytest.raises(errors.InsufficientPrivilege, match="their own"):
        await execute(api_pool, tenant_a.admin, statement)


async def test_user_cannot_move_into_another_company(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    statement = "UPDATE public.users SET company_id = %s WHERE id = auth.uid()"
    loner = Principal.user(create_auth_user(owner_conn))
    for user in (tenant_a.member, loner):
        with pytest.raises(errors.InsufficientPrivilege):
            await execute(api_pool, user, statement, (tenant_b.company_id,))
    assert (await role_of(owner_conn, loner.user_id))[0] is None


@pytest.mark.parametrize("new_company", ["other", "none"])
async def test_owner_cannot_move_a_teammate_by_update(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany, new_company: str
) -> None:
    statement = "UPDATE public.users SET company_id = %s WHERE id = %s"
    company = tenant_b.company_id if new_company == "other" else None
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(api_pool, tenant_a.owner, statement, (company, tenant_a.member.user_id))


async def test_owner_and_admin_change_a_teammates_role(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    statement = "UPDATE public.users SET role = %s WHERE id = %s"
    for manager in (tenant_a.owner, tenant_a.admin):
        assert await execute(api_pool, manager, statement, ("admin", tenant_a.member.user_id)) == 1


async def test_nobody_grants_owner_or_touches_the_owner(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    statement = "UPDATE public.users SET role = %s WHERE id = %s"
    with pytest.raises(errors.InsufficientPrivilege, match="owner role"):
        await execute(api_pool, tenant_a.owner, statement, ("owner", tenant_a.member.user_id))
    with pytest.raises(errors.InsufficientPrivilege, match="owner's role"):
        await execute(api_pool, tenant_a.admin, statement, ("user", tenant_a.owner.user_id))


async def test_other_company_cannot_change_or_remove_a_member(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    promote = "UPDATE public.users SET role = 'admin' WHERE id = %s"
    assert await execute(api_pool, tenant_b.owner, promote, (tenant_a.member.user_id,)) == 0
    with pytest.raises(errors.NoDataFound):
        await execute(api_pool, tenant_b.owner, REMOVE_MEMBER, (tenant_a.member.user_id,))


REMOVE_MEMBER = "SELECT public.remove_team_member(%s)"


async def test_owner_and_admin_remove_a_member_who_keeps_no_role(
    api_pool: Pool, owner_conn: psycopg.Connection, tenant_a: SeededCompany
) -> None:
    for manager in (tenant_a.owner, tenant_a.admin):
        async with rolled_back(api_pool, manager) as conn:
            await conn.execute(REMOVE_MEMBER, (tenant_a.member.user_id,))
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM public.users WHERE id = %s", (tenant_a.member.user_id,)
            )
            assert await cursor.fetchone() == {"n": 0}  # no longer a teammate
    member = Principal.user(
        invite_and_sign_up(owner_conn, tenant_a.company_id, tenant_a.owner.user_id, "admin")
    )
    async with transaction_as(api_pool, tenant_a.owner) as conn:
        await conn.execute(REMOVE_MEMBER, (member.user_id,))
    assert await role_of(owner_conn, member.user_id) == (None, "user")


@pytest.mark.parametrize("target", ["owner", "self", "other_company"])
async def test_removal_refuses_the_owner_oneself_and_strangers(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany, target: str
) -> None:
    target_id = {
        "owner": tenant_a.owner.user_id,
        "self": tenant_a.admin.user_id,
        "other_company": tenant_b.member.user_id,
    }[target]
    # A stranger is "no such member", exactly like an id that does not exist.
    expected = errors.NoDataFound if target == "other_company" else errors.InsufficientPrivilege
    with pytest.raises(expected):
        await execute(api_pool, tenant_a.admin, REMOVE_MEMBER, (target_id,))


async def test_plain_member_cannot_remove_anyone(api_pool: Pool, tenant_a: SeededCompany) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(api_pool, tenant_a.member, REMOVE_MEMBER, (tenant_a.admin.user_id,))


async def test_user_cannot_change_their_email_or_id(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(
            api_pool,
            tenant_a.owner,
            "UPDATE public.users SET email = 'x@y.z' WHERE id = auth.uid()",
        )


# --- notifications --------------------------------------------------------------------------


async def test_user_marks_own_notification_read_but_cannot_rewrite_it(
    api_pool: Pool, tenant_a: SeededCompany
) -> None:
    notification = tenant_a.rows["notifications"]
    mark_read = "UPDATE public.notifications SET read_at = now() WHERE id = %s"
    assert await execute(api_pool, tenant_a.member, mark_read, (notification,)) == 1
    assert await execute(api_pool, tenant_a.owner, mark_read, (notification,)) == 0
    with pytest.raises(errors.InsufficientPrivilege):
        await execute(
            api_pool,
            tenant_a.member,
            "UPDATE public.notifications SET title = 'x' WHERE id = %s",
            (notification,),
        )


# --- the policies themselves ----------------------------------------------------------------


def test_every_business_table_has_forced_rls(owner_conn: psycopg.Connection) -> None:
    rows = owner_conn.execute(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
    ).fetchall()
    assert {name for name, *_ in rows} == set(BUSINESS_TABLES)
    assert all(enabled and forced for _, enabled, forced in rows)


def test_no_policy_for_api_roles_is_unconditional(owner_conn: psycopg.Connection) -> None:
    rows = owner_conn.execute(
        "SELECT tablename, policyname, roles, qual, with_check FROM pg_policies"
        " WHERE schemaname = 'public'"
    ).fetchall()
    assert rows, "no policies found"
    for table, policy, roles, qual, with_check in rows:
        assert set(roles) == {"authenticated"}, (table, policy, roles)
        assert qual != "true", (table, policy)
        assert with_check != "true", (table, policy)
        for expression in (qual, with_check):
            if expression is not None:
                # The helper must be wrapped in a sub-select so it runs once per statement.
                assert "private.current_company_id()" not in expression.replace(
                    "( SELECT private.current_company_id() AS current_company_id)", ""
                ), (table, policy, expression)


# --- the per-transaction membership copy ---------------------------------------------------


async def test_membership_copy_of_another_user_is_ignored(
    api_pool: Pool, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    forged = f"{tenant_b.owner.user_id}:{tenant_b.company_id}:owner"
    async with rolled_back(api_pool, tenant_a.member) as conn:
        await conn.execute("SELECT set_config('request.membership', %s, true)", (forged,))
        rows = await (await conn.execute("SELECT company_id FROM public.contacts")).fetchall()
        role = await (await conn.execute("SELECT private.current_member_role() AS r")).fetchone()
    assert {row["company_id"] for row in rows} == {tenant_a.company_id}
    assert role == {"r": "user"}


async def test_company_created_mid_transaction_is_visible_at_once(
    api_pool: Pool, owner_conn: psycopg.Connection
) -> None:
    founder = Principal.user(create_auth_user(owner_conn))
    async with rolled_back(api_pool, founder) as conn:
        await conn.execute("INSERT INTO public.companies (name) VALUES ('Fresh')")
        await conn.execute(
            "INSERT INTO public.contacts (company_id, email)"
            " VALUES (private.current_company_id(), 'first@fresh.io')"
        )
        rows = await (await conn.execute("SELECT email FROM public.contacts")).fetchall()
    assert rows == [{"email": "first@fresh.io"}]
