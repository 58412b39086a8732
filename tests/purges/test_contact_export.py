"""The right of access: one JSON document with everything stored about a contact."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany
from tests.purges.test_contact_erasure import contact_with_history


async def everything(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, **query: str
) -> list[Any]:
    """Every item of a list endpoint, page after page."""
    items: list[Any] = []
    params: dict[str, Any] = {"limit": 100, **query}
    while True:
        page = (await client.get(path, headers=headers, params=params)).json()
        items += page["data"]
        if not page.get("next_cursor"):
            return items
        params["cursor"] = page["next_cursor"]


async def test_the_export_holds_exactly_what_the_api_shows_for_the_contact(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    tenant_b: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    admin = auth(tenant.admin)
    mine = await contact_with_history(client, admin, tenant, "ada@example.com")
    await contact_with_history(client, admin, tenant, "bob@example.com")  # not in the export
    contact_id = mine["contact"]["id"]
    conversation = mine["conversation"]["id"]
    history = [{"sender_type": "agent", "content": f"line {i}"} for i in range(1000)]
    for _ in range(3):
        imported = await client.post(
            f"/v1/conversations/{conversation}/messages/import", headers=admin,
            json={"messages": history},
        )  # fmt: skip
        assert imported.status_code == 201

    answer = await client.get(f"/v1/contacts/{contact_id}/export", headers=admin)
    assert answer.status_code == 200, answer.text
    assert "attachment" in answer.headers["content-disposition"]
    document = answer.json()
    assert (
        document["contact"]
        == (await client.get(f"/v1/contacts/{contact_id}", headers=admin)).json()
    )
    deals = await everything(client, admin, "/v1/deals", contact_id=contact_id)
    assert sorted(d["id"] for d in document["deals"]) == sorted(d["id"] for d in deals)
    conversations = await everything(client, admin, "/v1/conversations", contact_id=contact_id)
    assert [c["id"] for c in document["conversations"]] == [c["id"] for c in conversations]
    exported = document["conversations"][0]
    messages = exported.pop("messages")
    shown = (await client.get(f"/v1/conversations/{conversation}", headers=admin)).json()
    # The export holds the conversation as stored; the names and the unread count are
    # the reader's view of it (the inbox's), resolved as it is read.
    for view in (shown, exported):
        view.pop("unread_count")
        view.pop("contact_name")
        view["last_message"].pop("sender_name")
    assert exported == shown
    shown = await everything(
        client, admin, f"/v1/conversations/{conversation}/messages", direction="forward"
    )
    assert len(messages) == 3002
    assert messages == shown
    for part, table in (("analytics_events", "analytics_events"), ("call_history", "call_history"),
                        ("call_recordings", "call_recordings")):  # fmt: skip
        ids = owner_conn.execute(
            f"SELECT id::text FROM public.{table} WHERE contact_id = %s",  # noqa: S608 (fixed names)
            (contact_id,),
        ).fetchall()
        assert sorted(row["id"] for row in document[part]) == sorted(i for (i,) in ids)
        assert ids

    stranger = await client.get(f"/v1/contacts/{contact_id}/export", headers=auth(tenant_b.owner))
    assert stranger.status_code == 404
    missing = await client.get(f"/v1/contacts/{'0' * 32}/export", headers=admin)
    assert missing.status_code == 404
