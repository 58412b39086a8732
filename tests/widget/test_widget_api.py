"""The public widget channel: an agent's public key and a per-conversation session."""

from __future__ import annotations

import httpx
import orjson
import psycopg

from syntera.events.model import Event
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany
from tests.widget.helpers import public_key, start_chat


async def test_visitor_chats_through_the_widget_and_the_company_sees_it(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    key = await public_key(client, auth(tenant.member), tenant.rows["agent_configs"])
    chat = await start_chat(client, key)
    conversation = chat["conversation"]
    assert conversation["agent_id"] == str(tenant.rows["agent_configs"])
    assert conversation["channel"] == "chat"
    visitor = {"X-Api-Key": key, "X-Widget-Session": chat["session_token"]}
    url = f"/v1/public/conversations/{conversation['id']}/messages"
    sent = await client.post(url, headers=visitor, json={"content": "Do you ship to Oslo?"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["sender_type"] == "user"
    history = await client.get(url, headers=visitor)
    assert [m["content"] for m in history.json()["data"]] == ["Do you ship to Oslo?"]

    seen_by_company = await client.get(
        f"/v1/conversations/{conversation['id']}/messages", headers=auth(tenant.member)
    )
    assert [m["id"] for m in seen_by_company.json()["data"]] == [sent.json()["id"]]
    recorded = owner_conn.execute(
        "SELECT event_type, user_id FROM analytics_events WHERE conversation_id = %s"
        " ORDER BY created_at",
        (conversation["id"],),
    ).fetchall()
    assert recorded == [("conversation.started", None), ("message.received", None)]


async def test_wrong_or_missing_key_is_401_and_a_disabled_agent_is_403(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    for headers in ({}, {"X-Api-Key": "pub_key_unknown"}, {"X-Api-Key": "sk_live_x"}):
        response = await client.post("/v1/public/conversations", headers=headers)
        assert response.status_code == 401, response.text
    member = auth(tenant.member)
    agent = tenant.rows["agent_configs"]
    old_key = await public_key(client, member, agent)
    new_key = await public_key(client, member, agent)
    rotated_out = await client.post("/v1/public/conversations", headers={"X-Api-Key": old_key})
    assert rotated_out.status_code == 401
    await client.patch(f"/v1/agents/{agent}", headers=member, json={"enabled": False})
    disabled = await client.post("/v1/public/conversations", headers={"X-Api-Key": new_key})
    assert disabled.status_code == 403


async def test_a_session_reaches_only_its_own_conversation(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    make_tenant: MakeTenant,
) -> None:
    key = await public_key(client, auth(tenant.member), tenant.rows["agent_configs"])
    mine, theirs = await start_chat(client, key), await start_chat(client, key)
    my_session = {"X-Api-Key": key, "X-Widget-Session": mine["session_token"]}
    other_url = f"/v1/public/conversations/{theirs['conversation']['id']}/messages"
    assert (await client.get(other_url, headers=my_session)).status_code == 404
    posted = await client.post(other_url, headers=my_session, json={"content": "hi"})
    assert posted.status_code == 404
    without_session = await client.get(other_url, headers={"X-Api-Key": key})
    assert without_session.status_code == 401

    # Another company's key with this session, and an API token as a session: refused.
    other = await make_tenant()
    other_key = await public_key(client, auth(other.member), other.rows["agent_configs"])
    my_url = f"/v1/public/conversations/{mine['conversation']['id']}/messages"
    crossed = {"X-Api-Key": other_key, "X-Widget-Session": mine["session_token"]}
    assert (await client.get(my_url, headers=crossed)).status_code == 404
    api_token = auth(tenant.member)["Authorization"].removeprefix("Bearer ")
    forged = {"X-Api-Key": key, "X-Widget-Session": api_token}
    assert (await client.get(my_url, headers=forged)).status_code == 401
    as_api_token = {"Authorization": f"Bearer {mine['session_token']}"}
    assert (await client.get("/v1/conversations", headers=as_api_token)).status_code == 401


async def test_widget_message_validation(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    key = await public_key(client, auth(tenant.member), tenant.rows["agent_configs"])
    chat = await start_chat(client, key)
    visitor = {"X-Api-Key": key, "X-Widget-Session": chat["session_token"]}
    url = f"/v1/public/conversations/{chat['conversation']['id']}/messages"
    too_long = await client.post(url, headers=visitor, json={"content": "x" * 40_000})
    assert too_long.status_code == 422
    as_agent = await client.post(
        url, headers=visitor, json={"content": "hi", "sender_type": "agent"}
    )
    assert as_agent.status_code == 422  # a visitor cannot speak for the agent


async def test_a_widget_message_whose_commit_fails_leaves_nothing_in_mongodb(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    """The widget's transaction is a unit of work like a member's: when its COMMIT fails
    (here a deferred check refuses the message's analytics event at commit), the message
    already appended to MongoDB is taken back."""
    key = await public_key(client, auth(tenant.member), tenant.rows["agent_configs"])
    chat = await start_chat(client, key)
    conversation = chat["conversation"]["id"]
    visitor = {"X-Api-Key": key, "X-Widget-Session": chat["session_token"]}
    url = f"/v1/public/conversations/{conversation}/messages"
    kept = await client.post(url, headers=visitor, json={"content": "kept"})
    assert kept.status_code == 201, kept.text
    refuse_at_commit = f"refuse_events_{tenant.company_id.hex}"
    owner_conn.execute(f"""
        CREATE FUNCTION public.{refuse_at_commit}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
        CREATE CONSTRAINT TRIGGER {refuse_at_commit} AFTER INSERT ON public.analytics_events
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN (NEW.company_id = '{tenant.company_id}')
        EXECUTE FUNCTION public.{refuse_at_commit}();
    """)  # fmt: skip
    try:
        failed = await client.post(url, headers=visitor, json={"content": "taken back"})
    finally:
        owner_conn.execute(f"""
            DROP TRIGGER {refuse_at_commit} ON public.analytics_events;
            DROP FUNCTION public.{refuse_at_commit}();
        """)  # fmt: skip
    assert failed.status_code >= 500, failed.text
    history = await client.get(url, headers=visitor)
    assert [m["content"] for m in history.json()["data"]] == ["kept"]
    company_view = await client.get(
        f"/v1/conversations/{conversation}/messages", headers=auth(tenant.member)
    )
    assert [m["content"] for m in company_view.json()["data"]] == ["kept"]


async def test_the_visitor_never_sees_the_team_s_reading_of_a_message_nor_who_wrote_it(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    key = await public_key(client, auth(tenant.member), tenant.rows["agent_configs"])
    chat = await start_chat(client, key)
    conversation_id = chat["conversation"]["id"]
    visitor = {"X-Api-Key": key, "X-Widget-Session": chat["session_token"]}
    team = f"/v1/conversations/{conversation_id}/messages"
    judged = await client.post(team, headers=auth(tenant.member), json={
        "sender_type": "user", "content": "This is the third time I ask!",
        "metadata": {"intent": {"name": "complaint", "confidence": 0.93},
                     "sentiment": {"label": "negative", "score": -0.8}},
    })  # fmt: skip
    assert judged.status_code == 201, judged.text
    reply = await client.post(
        team, headers=auth(tenant.member), json={"sender_type": "agent", "content": "Sorry!"}
    )
    assert reply.json()["sender_id"] == str(tenant.member.user_id)  # the team sees it

    history = await client.get(f"/v1/public/conversations/{conversation_id}/messages",
                               headers=visitor)  # fmt: skip
    shown = history.json()["data"]
    assert [m["content"] for m in shown] == ["This is the third time I ask!", "Sorry!"]
    assert all(m["sender_id"] is None for m in shown)
    assert all(m["metadata"]["intent"] is None for m in shown)
    assert all(m["metadata"]["sentiment"] is None for m in shown)

    # The same message as an event on the widget's stream.
    event = Event.new("message.created", tenant.company_id, conversation_id, reply.json())
    widget = event.for_widget()
    assert widget is not None
    data = orjson.loads(widget.body)["data"]
    assert "sender_id" not in data
    assert data["content"] == "Sorry!"
    for kind in ("message.reaction", "message.read"):  # they carry the whole message too
        again = Event.new(kind, tenant.company_id, conversation_id, reply.json()).for_widget()
        assert again is not None
        assert "sender_id" not in orjson.loads(again.body)["data"]
    judged_event = Event.new("message.created", tenant.company_id, conversation_id, judged.json())
    shown_event = judged_event.for_widget()
    assert shown_event is not None
    assert "intent" not in orjson.loads(shown_event.body)["data"]["metadata"]
