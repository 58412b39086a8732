"""Tenants and rows for tests, made through the same paths the platform uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from syntera.db.postgres import TenantConnection, transaction_as
from syntera.kb.vectors import vector_literal
from syntera.tenancy import Principal


@dataclass
class SeededCompany:
    """A company with an owner, an admin and a plain member, and one row per table."""

    company_id: uuid.UUID
    owner: Principal
    admin: Principal
    member: Principal
    rows: dict[str, uuid.UUID] = field(default_factory=dict)


def create_auth_user(owner_conn: psycopg.Connection, email: str | None = None) -> uuid.UUID:
    """An auth.users row (as sign-up would make); its trigger makes the public.users row."""
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
    row = owner_conn.execute(
        "INSERT INTO auth.users (email) VALUES (%s) RETURNING id", (email,)
    ).fetchone()
    assert row is not None
    user_id: uuid.UUID = row[0]
    return user_id


def invite_and_sign_up(
    owner_conn: psycopg.Connection, company_id: uuid.UUID, inviter: uuid.UUID, role: str
) -> uuid.UUID:
    """A new user who joins ``company_id`` with ``role`` through an invitation: invited,
    signed up, and accepting it (as themselves: ``auth.uid()`` is theirs)."""
    email = f"invitee-{uuid.uuid4().hex[:12]}@example.com"
    invitation = owner_conn.execute(
        "INSERT INTO public.invitations (company_id, email, role, invited_by)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (company_id, email, role, inviter),
    ).fetchone()
    assert invitation is not None
    user_id = create_auth_user(owner_conn, email)
    with owner_conn.transaction():
        owner_conn.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", (str(user_id),))
        owner_conn.execute("SELECT public.accept_invitation(%s)", (invitation[0],))
    return user_id


async def create_company(
    pool: AsyncConnectionPool[TenantConnection], user_id: uuid.UUID, name: str = "Acme"
) -> uuid.UUID:
    """A company created by ``user_id`` through the API role, as the API does it."""
    async with transaction_as(pool, Principal.user(user_id)) as conn:
        cursor = await conn.execute(
            "INSERT INTO public.companies (name) VALUES (%s) RETURNING id", (name,)
        )
        row = await cursor.fetchone()
    assert row is not None
    company_id: uuid.UUID = row["id"]
    return company_id


SEED_ROWS: list[tuple[str, str]] = [
    (
        "agent_configs",
        "INSERT INTO public.agent_configs (company_id, name, system_prompt)"
        " VALUES (%(company_id)s, 'Support', 'Be helpful') RETURNING id",
    ),
    (
        "contacts",
        "INSERT INTO public.contacts (company_id, email, first_name, tags)"
        " VALUES (%(company_id)s, 'ann@example.com', 'Ann', '{vip}') RETURNING id",
    ),
    (
        "deals",
        "INSERT INTO public.deals (company_id, contact_id, title, value)"
        " VALUES (%(company_id)s, %(contacts)s, 'Renewal', 1200.50) RETURNING id",
    ),
    (
        "knowledge_base_documents",
        "INSERT INTO public.knowledge_base_documents (company_id, agent_id, name, file_path)"
        " VALUES (%(company_id)s, %(agent_configs)s, 'FAQ', 'kb/faq.md') RETURNING id",
    ),
    (
        "knowledge_base_chunks",
        "INSERT INTO public.knowledge_base_chunks"
        " (company_id, document_id, agent_id, chunk_index, content, embedding)"
        " VALUES (%(company_id)s, %(knowledge_base_documents)s, %(agent_configs)s, 0,"
        " 'Refunds within 30 days.', array_fill(0.05::real, ARRAY[384])::vector) RETURNING id",
    ),
    (
        "workflows",
        "INSERT INTO public.workflows (company_id, name, trigger_type)"
        " VALUES (%(company_id)s, 'Greet', 'contact_created') RETURNING id",
    ),
    (
        "workflow_executions",
        "INSERT INTO public.workflow_executions"
        " (company_id, workflow_id, trigger_type, status, finished_at)"
        " VALUES (%(company_id)s, %(workflows)s, 'contact_created', 'success', now())"
        " RETURNING id",
    ),
    (
        "call_recordings",
        "INSERT INTO public.call_recordings (company_id, agent_id, contact_id, recording_url)"
        " VALUES (%(company_id)s, %(agent_configs)s, %(contacts)s, 'rec/1.wav') RETURNING id",
    ),
    (
        "call_history",
        "INSERT INTO public.call_history"
        " (company_id, agent_id, contact_id, recording_id, direction)"
        " VALUES (%(company_id)s, %(agent_configs)s, %(contacts)s, %(call_recordings)s,"
        " 'inbound') RETURNING id",
    ),
    (
        "analytics_events",
        "INSERT INTO public.analytics_events (company_id, event_type, agent_id, contact_id)"
        " VALUES (%(company_id)s, 'conversation.started', %(agent_configs)s, %(contacts)s)"
        " RETURNING id",
    ),
    (
        "notifications",
        "INSERT INTO public.notifications (company_id, user_id, type, title)"
        " VALUES (%(company_id)s, %(member_id)s, 'deal', 'A deal moved') RETURNING id",
    ),
    (
        "invitations",
        "INSERT INTO public.invitations (company_id, email, invited_by)"
        " VALUES (%(company_id)s, %(invite_email)s, %(owner_id)s) RETURNING id",
    ),
    (
        "saved_replies",
        "INSERT INTO public.saved_replies (company_id, shortcut, content)"
        " VALUES (%(company_id)s, 'thanks', 'Thank you for your patience.') RETURNING id",
    ),
]


async def create_tenant(
    pool: AsyncConnectionPool[TenantConnection], owner_conn: psycopg.Connection
) -> SeededCompany:
    """A company with its three members and one row in every business table."""
    owner_id = create_auth_user(owner_conn)
    company_id = await create_company(pool, owner_id)
    admin_id = invite_and_sign_up(owner_conn, company_id, owner_id, "admin")
    member_id = invite_and_sign_up(owner_conn, company_id, owner_id, "user")
    tenant = SeededCompany(
        company_id,
        owner=Principal.user(owner_id),
        admin=Principal.user(admin_id),
        member=Principal.user(member_id),
    )
    params: dict[str, Any] = {
        "company_id": company_id,
        "owner_id": owner_id,
        "member_id": member_id,
        "invite_email": f"pending-{uuid.uuid4().hex[:12]}@example.com",
    }
    for table, statement in SEED_ROWS:
        row = owner_conn.execute(statement, params).fetchone()
        assert row is not None
        params[table] = tenant.rows[table] = row[0]
    return tenant


def bulk_chunks(
    owner_conn: psycopg.Connection, company_id: uuid.UUID, vectors: Iterable[Sequence[float]]
) -> uuid.UUID:
    """A completed document of ``company_id`` with one chunk ("chunk N") per vector,
    copied in without embedding anything; its id."""
    [(document_id,)] = owner_conn.execute(
        "INSERT INTO public.knowledge_base_documents (company_id, name, file_path, status)"
        " VALUES (%s, 'bulk', 'none', 'completed') RETURNING id",
        (company_id,),
    ).fetchall()
    with owner_conn.cursor().copy(
        "COPY public.knowledge_base_chunks"
        " (company_id, document_id, chunk_index, content, embedding) FROM STDIN"
    ) as copy:
        for index, vector in enumerate(vectors):
            copy.write_row(
                (company_id, document_id, index, f"chunk {index}", vector_literal(vector))
            )
    chunked: uuid.UUID = document_id
    return chunked
