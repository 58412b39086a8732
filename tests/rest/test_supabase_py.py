"""supabase-py's own PostgREST client (``postgrest`` from PyPI), unchanged, runs the
specification's examples against /rest/v1 as Supabase's clients send them (``apikey``
and a bearer): as a signed-in member, with the anon key and with the service-role key."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import psycopg
import pytest
from postgrest import APIError, AsyncPostgrestClient

from syntera.auth.tokens import api_key, load_keys
from syntera.config import Settings
from syntera.tenancy import Principal
from tests.api_fixtures import token_for
from tests.factories import SeededCompany, create_auth_user

URL = "http://api.test/rest/v1"


@pytest.fixture
def client_with(
    rest_app: httpx.AsyncClient, settings: Settings
) -> Callable[[str], AsyncPostgrestClient]:
    """``client_with(bearer)``: the client as supabase-py makes it (the anon key as
    ``apikey``, ``bearer`` as the Authorization), over the in-process application."""
    anon = api_key(load_keys(settings), "anon")

    def make(bearer: str) -> AsyncPostgrestClient:
        headers = {"apikey": anon, "Authorization": f"Bearer {bearer}"}
        return AsyncPostgrestClient(URL, headers=headers, http_client=rest_app)

    return make


async def test_a_signed_in_member_runs_the_specifications_examples(
    client_with: Callable[[str], AsyncPostgrestClient],
    settings: Settings,
    tenant: SeededCompany,
) -> None:
    supabase = client_with(token_for(settings, tenant.member))
    company_id = str(tenant.company_id)

    agents = (
        await supabase.from_("agent_configs").select("*").eq("company_id", company_id).execute()
    )
    assert [agent["id"] for agent in agents.data] == [str(tenant.rows["agent_configs"])]

    inserted = (
        await supabase.from_("contacts")
        .insert({"company_id": company_id, "email": "py@example.com", "first_name": "Py"})
        .execute()
    )
    contact_id = inserted.data[0]["id"]
    assert inserted.data[0]["email"] == "py@example.com"

    deals = [
        {"company_id": company_id, "contact_id": contact_id, "title": f"Deal {i}", "value": i}
        for i in range(3)
    ]
    await supabase.from_("deals").insert(deals).execute()
    page = (
        await supabase.from_("deals")
        .select("*", count="exact")
        .eq("company_id", company_id)
        .order("created_at", desc=True)
        .order("title", desc=True)
        .range(0, 1)
        .execute()
    )
    assert [deal["title"] for deal in page.data] == ["Deal 2", "Deal 1"]
    assert page.count == 4  # and the seeded one

    embedded = (
        await supabase.from_("deals")
        .select("title, contacts(email)")
        .eq("contact_id", contact_id)
        .order("title")
        .execute()
    )
    assert embedded.data[0] == {"title": "Deal 0", "contacts": {"email": "py@example.com"}}

    upserted = (
        await supabase.from_("contacts")
        .upsert({"company_id": company_id, "email": "upsert@example.com"})
        .execute()
    )
    assert upserted.data[0]["email"] == "upsert@example.com"

    updated = (
        await supabase.from_("contacts")
        .update({"last_name": "Updated"})
        .eq("id", contact_id)
        .execute()
    )
    assert updated.data[0]["last_name"] == "Updated"

    single = (
        await supabase.from_("contacts")
        .select("id, last_name")
        .eq("id", contact_id)
        .single()
        .execute()
    )
    assert single.data == {"id": contact_id, "last_name": "Updated"}
    nobody = (
        await supabase.from_("contacts")
        .select("*")
        .eq("id", str(uuid.uuid4()))
        .maybe_single()
        .execute()
    )
    assert nobody is None
    with pytest.raises(APIError) as several:
        await supabase.from_("deals").select("*").eq("company_id", company_id).single().execute()
    assert several.value.code == "PGRST116"

    invitations = await supabase.rpc("pending_invitations", {}).execute()
    assert invitations.data == []  # the member accepted theirs

    await supabase.from_("deals").delete().eq("contact_id", contact_id).execute()
    deleted = await supabase.from_("contacts").delete().eq("id", contact_id).execute()
    assert [row["id"] for row in deleted.data] == [contact_id]
    gone = await supabase.from_("contacts").select("id").eq("id", contact_id).execute()
    assert gone.data == []


async def test_an_invited_user_sees_their_invitation_through_rpc(
    client_with: Callable[[str], AsyncPostgrestClient],
    settings: Settings,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    email = f"invited-{uuid.uuid4().hex[:8]}@example.com"
    owner_conn.execute(
        "INSERT INTO public.invitations (company_id, email, invited_by) VALUES (%s, %s, %s)",
        (tenant.company_id, email, tenant.owner.user_id),
    )
    invitee = Principal.user(create_auth_user(owner_conn, email))
    supabase = client_with(token_for(settings, invitee))
    found = await supabase.rpc("pending_invitations", {}).execute()
    assert [(row["company_id"], row["company_name"]) for row in found.data] == [
        (str(tenant.company_id), "Acme")
    ]
    by_get = await supabase.rpc("pending_invitations", {}, get=True).select("role").execute()
    assert by_get.data == [{"role": "user"}]


async def test_the_anon_key_reads_and_writes_nothing(
    client_with: Callable[[str], AsyncPostgrestClient],
    settings: Settings,
    tenant: SeededCompany,
) -> None:
    supabase = client_with(api_key(load_keys(settings), "anon"))
    company_id = str(tenant.company_id)
    with pytest.raises(APIError) as read:
        await supabase.from_("agent_configs").select("*").eq("company_id", company_id).execute()
    assert read.value.code == "42501"
    with pytest.raises(APIError) as written:
        await (
            supabase.from_("contacts")
            .insert({"company_id": company_id, "email": "a@b.c"})
            .execute()
        )
    assert written.value.code == "42501"
    with pytest.raises(APIError) as called:
        await supabase.rpc("pending_invitations", {}).execute()
    assert called.value.code == "42501"


async def test_the_service_role_key_bypasses_row_level_security(
    client_with: Callable[[str], AsyncPostgrestClient],
    settings: Settings,
    tenant_a: SeededCompany,
    tenant_b: SeededCompany,
) -> None:
    supabase = client_with(api_key(load_keys(settings), "service_role"))
    both = [str(tenant_a.company_id), str(tenant_b.company_id)]
    agents = (
        await supabase.from_("agent_configs").select("company_id").in_("company_id", both).execute()
    )
    assert sorted(agent["company_id"] for agent in agents.data) == sorted(both)

    contact_id = str(uuid.uuid4())
    created = (
        await supabase.from_("contacts")
        .insert({"id": contact_id, "company_id": both[1], "email": "svc@example.com"})
        .execute()
    )
    assert created.data[0]["id"] == contact_id
    merged = (
        await supabase.from_("contacts")
        .upsert({"id": contact_id, "company_id": both[1], "email": "merged@example.com"})
        .execute()
    )
    assert merged.data[0]["email"] == "merged@example.com"
    counted = (
        await supabase.from_("contacts")
        .select("id", count="exact", head=True)
        .eq("id", contact_id)
        .execute()
    )
    assert counted.count == 1
    one = await supabase.from_("contacts").select("email").eq("id", contact_id).single().execute()
    assert one.data == {"email": "merged@example.com"}
    await supabase.from_("contacts").update({"first_name": "Svc"}).eq("id", contact_id).execute()
    deleted = await supabase.from_("contacts").delete().eq("id", contact_id).execute()
    assert deleted.data[0]["first_name"] == "Svc"
