"""Conversations, messages and threads through the API, on the embedded MongoDB-wire server
and PostgreSQL: life cycle, paging, thread counts, aggregations, isolation, bad input."""

from __future__ import annotations

import asyncio
import base64
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fastapi import FastAPI

from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany
from tests.mongo_watch import watch

Json = dict[str, Any]


@pytest.fixture
def headers(auth: AuthHeaders, tenant: SeededCompany) -> dict[str, str]:
    return auth(tenant.member)


async def post(client: httpx.AsyncClient, url: str, headers: dict[str, str], body: Json) -> Json:
    response = await client.post(url, headers=headers, json=body)
    assert response.status_code in (200, 201), response.text
    result: Json = response.json()
    return result


async def start(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany, **extra: Any
) -> Json:
    body = {"agent_id": str(tenant.rows["agent_configs"]), **extra}
    return await post(client, "/v1/conversations", headers, body)


def user_message(text: str, **extra: Any) -> Json:
    return {"sender_type": "user", "role": "user", "content": text, **extra}


def events(owner_conn: psycopg.Connection, conversation_id: str) -> list[str]:
    rows = owner_conn.execute(
        "SELECT event_type FROM analytics_events WHERE conversation_id = %s ORDER BY created_at",
        (conversation_id,),
    ).fetchall()
    return [row[0] for row in rows]


async def test_conversation_life_cycle_records_analytics_events(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    conversation = await start(
        client, headers, tenant, channel="voice", contact_id=str(tenant.rows["contacts"]),
        tags=["vip"],
    )  # fmt: skip
    assert conversation["status"] == "active"
    assert conversation["company_id"] == str(tenant.company_id)
    url = f"/v1/conversations/{conversation['id']}"
    message = await post(client, f"{url}/messages", headers, user_message("I want to buy",
        metadata={"intent": {"category": "purchase"}}))  # fmt: skip
    assert message["conversation_id"] == conversation["id"]
    agent_reply = await post(client, f"{url}/messages", headers, {
        "sender_type": "agent", "role": "assistant", "content": "Great!",
        "ai_metadata": {"model": "gpt-4o-mini", "tokens_used": 12, "response_time_ms": 340},
    })  # fmt: skip
    assert agent_reply["ai_metadata"]["response_time_ms"] == 340

    patched = await client.patch(url, headers=headers, json={"summary": "Wants to buy"})
    assert patched.json()["summary"] == "Wants to buy"
    assert patched.json()["summary_updated_at"] is not None

    ended = await post(client, f"{url}/end", headers, {})
    assert ended["status"] == "ended"
    assert ended["ended_at"] >= ended["started_at"]
    again = await post(client, f"{url}/end", headers, {})
    assert again["ended_at"] == ended["ended_at"]
    refused = await client.post(f"{url}/messages", headers=headers, json=user_message("late"))
    assert refused.status_code == 409

    archived = await post(client, f"{url}/archive", headers, {})
    assert archived["status"] == "archived"
    listed = (await client.get("/v1/conversations", headers=headers)).json()["data"]
    assert conversation["id"] not in [c["id"] for c in listed]
    with_archived = await client.get(
        "/v1/conversations", headers=headers, params={"include_archived": "true"}
    )
    assert conversation["id"] in [c["id"] for c in with_archived.json()["data"]]
    assert (await client.get(url, headers=headers)).status_code == 200

    assert events(owner_conn, conversation["id"]) == [
        "conversation.started", "message.received", "conversation.ended",
    ]  # fmt: skip
    intent = owner_conn.execute(
        "SELECT properties -> 'intent' ->> 'category' FROM analytics_events"
        " WHERE conversation_id = %s AND event_type = 'message.received'",
        (conversation["id"],),
    ).fetchone()
    assert intent == ("purchase",)


async def test_conversations_filter_by_status_channel_agent_contact_and_tag(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    contact = str(tenant.rows["contacts"])
    email = await start(client, headers, tenant, channel="email", tags=["billing"])
    voice = await start(client, headers, tenant, channel="voice", contact_id=contact)
    await post(client, f"/v1/conversations/{voice['id']}/end", headers, {})

    async def ids(**params: str) -> list[str]:
        response = await client.get("/v1/conversations", headers=headers, params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["data"]]

    assert await ids(channel="email") == [email["id"]]
    assert await ids(status="ended") == [voice["id"]]
    assert await ids(contact_id=contact) == [voice["id"]]
    assert await ids(tag="billing") == [email["id"]]
    assert await ids(agent_id=str(tenant.rows["agent_configs"])) == [voice["id"], email["id"]]
    first = await client.get("/v1/conversations", headers=headers, params={"limit": 1})
    second = await client.get(
        "/v1/conversations", headers=headers,
        params={"limit": 1, "cursor": first.json()["next_cursor"]},
    )  # fmt: skip
    assert second.status_code == 200, second.text
    assert [c["id"] for c in first.json()["data"] + second.json()["data"]] == [
        voice["id"], email["id"],
    ]  # fmt: skip
    assert second.json()["next_cursor"] is None


@pytest.mark.slow
async def test_paging_ten_thousand_messages_returns_each_once_in_order_while_more_arrive(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    conversation = await start(client, headers, tenant)
    url = f"/v1/conversations/{conversation['id']}/messages"
    for batch in range(10):
        body = {"messages": [user_message(f"{batch * 1000 + i}") for i in range(1000)]}
        assert len((await post(client, f"{url}/import", headers, body))["data"]) == 1000
    seen: list[str] = []
    cursor = None
    while True:
        params: Json = {"direction": "forward", "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(url, headers=headers, params=params)).json()
        seen.extend(message["content"] for message in page["data"])
        await post(client, url, headers, user_message("arrived later"))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    history = [text for text in seen if text != "arrived later"]
    assert history == [str(i) for i in range(10_000)]
    assert seen[:10_000] == history  # the new ones come after, never in between

    newest = (await client.get(url, headers=headers, params={"limit": 5})).json()["data"]
    assert [m["content"] for m in newest] == ["arrived later"] * 5
    latest = seen.count("arrived later") + 1  # one more arrived after the last page
    back = (await client.get(url, headers=headers, params={"limit": 100})).json()
    back_more = (await client.get(
        url, headers=headers, params={"limit": 100, "cursor": back["next_cursor"]}
    )).json()  # fmt: skip
    newest_first = [m["content"] for m in back["data"] + back_more["data"]]
    expected_history = [str(i) for i in range(9_999, 9_999 - (200 - latest), -1)]
    assert newest_first == ["arrived later"] * latest + expected_history


async def test_thread_counts_stay_right_under_concurrent_appends(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    conversation = await start(client, headers, tenant)
    url = f"/v1/conversations/{conversation['id']}"
    first = await post(client, f"{url}/threads", headers, {"title": "Billing"})
    second = await post(client, f"{url}/threads", headers, {"title": "Shipping"})

    async def send(thread: Json, i: int) -> None:
        await post(
            client, f"{url}/messages", headers, user_message(f"m{i}", thread_id=thread["id"])
        )

    await asyncio.gather(*(send(first if i % 3 else second, i) for i in range(60)))
    await post(client, f"{url}/messages/import", headers, {
        "messages": [user_message("bulk", thread_id=second["id"]) for _ in range(7)]
    })  # fmt: skip
    threads = {t["title"]: t for t in (await client.get(f"{url}/threads", headers=headers)).json()}
    assert threads["Billing"]["message_count"] == 40
    assert threads["Shipping"]["message_count"] == 20 + 7
    in_thread = await client.get(
        f"{url}/messages", headers=headers, params={"thread_id": second["id"], "limit": 100}
    )
    assert len(in_thread.json()["data"]) == 27

    renamed = await client.patch(
        f"{url}/threads/{first['id']}", headers=headers, json={"title": "Invoices"}
    )
    assert renamed.json()["title"] == "Invoices"
    assert renamed.json()["message_count"] == 40
    unknown = await client.post(
        f"{url}/messages", headers=headers, json=user_message("x", thread_id="nope")
    )
    assert unknown.status_code == 422


async def test_reactions_and_read_receipts_are_the_only_changes_to_a_message(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    conversation = await start(client, headers, tenant)
    url = f"/v1/conversations/{conversation['id']}/messages"
    message = await post(client, url, headers, user_message("hello"))
    for _ in range(2):
        reacted = await post(client, f"{url}/{message['id']}/reactions", headers, {"emoji": "👍"})
    assert [r["emoji"] for r in reacted["metadata"]["reactions"]] == ["👍"]  # once per user
    read = await post(client, f"{url}/{message['id']}/read", headers, {})
    assert [r["user_id"] for r in read["read_by"]] == [str(tenant.member.user_id)]
    assert read["content"] == "hello"


async def test_statistics_match_values_computed_in_python(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    make_tenant: MakeTenant,
) -> None:
    tenant = await make_tenant()
    headers = auth(tenant.owner)
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    started = []
    response_times = [100, 250, 400, 55, 1000]
    for channel, response_time in zip(
        ["chat", "chat", "voice", "email", "chat"], response_times, strict=True
    ):
        conversation = await start(client, headers, tenant, channel=channel)
        await post(client, f"/v1/conversations/{conversation['id']}/messages", headers, {
            "sender_type": "agent", "role": "assistant", "content": "hi",
            "ai_metadata": {"model": "m", "tokens_used": 1, "response_time_ms": response_time},
        })  # fmt: skip
        started.append(conversation)
    ended = [await post(client, f"/v1/conversations/{c['id']}/end", headers, {})
             for c in started[:4]]  # fmt: skip
    stats = (await client.get(
        "/v1/analytics/conversations", headers=headers, params={"since": since}
    )).json()  # fmt: skip

    def seconds(c: Json) -> float:
        at = datetime.fromisoformat
        return (at(c["ended_at"]) - at(c["started_at"])).total_seconds()

    by_channel = {g["key"]: g for g in stats["groups"]}
    assert {k: g["conversations"] for k, g in by_channel.items()} == {
        "chat": 3, "voice": 1, "email": 1,
    }  # fmt: skip
    chat_ended = [c for c in ended if c["channel"] == "chat"]
    assert by_channel["chat"]["average_duration_s"] == pytest.approx(
        statistics.mean(seconds(c) for c in chat_ended)
    )
    assert stats["messages"] == [{
        "sender_type": "agent", "messages": 5,
        "average_response_time_ms": pytest.approx(statistics.mean(response_times)),
    }]  # fmt: skip
    per_day = (await client.get(
        "/v1/analytics/conversations", headers=headers,
        params={"since": since, "group_by": "day"},
    )).json()["groups"]  # fmt: skip
    days = {c["started_at"][:10] for c in started}
    assert {g["key"] for g in per_day} == days
    assert sum(g["conversations"] for g in per_day) == 5
    per_agent = (await client.get(
        "/v1/analytics/conversations", headers=headers,
        params={"since": since, "group_by": "agent"},
    )).json()["groups"]  # fmt: skip
    assert per_agent[0]["key"] == str(tenant.rows["agent_configs"])
    assert per_agent[0]["conversations"] == 5


BAD_MESSAGES = [
    (user_message("x", sender_type="robot"), "sender_type"),
    (user_message("x", role="customer"), "role"),
    (user_message("x" * (32 * 1024 + 1)), "content"),
    (user_message("é" * (16 * 1024 + 1)), "content"),  # 32 KiB counts bytes, not characters
    (user_message("x", message_type="hologram"), "message_type"),
    (
        user_message("x", ai_metadata={"model": "m", "tokens_used": -1, "response_time_ms": 1}),
        "ai_metadata.tokens_used",
    ),
    (user_message("x", extra=1), "extra"),
]


@pytest.mark.parametrize(("body", "field"), BAD_MESSAGES)
async def test_bad_message_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    tenant: SeededCompany,
    body: Json,
    field: str,
) -> None:
    conversation = await start(client, headers, tenant)
    response = await client.post(
        f"/v1/conversations/{conversation['id']}/messages", headers=headers, json=body
    )
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_bad_conversation_input(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    tenant: SeededCompany,
    make_tenant: MakeTenant,
) -> None:
    assert (await client.get("/v1/conversations/not-an-id", headers=headers)).status_code == 404
    assert (await client.get(f"/v1/conversations/{'0' * 24}", headers=headers)).status_code == 404
    other = await make_tenant()
    foreign_agent = await client.post(
        "/v1/conversations", headers=headers, json={"agent_id": str(other.rows["agent_configs"])}
    )
    assert foreign_agent.status_code == 422
    assert foreign_agent.json()["errors"][0]["field"] == "agent_id"
    bad_channel = await client.post(
        "/v1/conversations", headers=headers,
        json={"agent_id": str(tenant.rows["agent_configs"]), "channel": "fax"},
    )  # fmt: skip
    assert bad_channel.status_code == 422
    bad_filter = await client.get("/v1/conversations", headers=headers, params={"status": "x"})
    assert bad_filter.status_code == 422


async def test_user_of_other_company_gets_404_for_every_conversation_endpoint(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    headers: dict[str, str],
    tenant: SeededCompany,
    make_tenant: MakeTenant,
) -> None:
    conversation = await start(client, headers, tenant)
    url = f"/v1/conversations/{conversation['id']}"
    thread = await post(client, f"{url}/threads", headers, {"title": "T"})
    message = await post(client, f"{url}/messages", headers, user_message("secret"))
    stranger = auth((await make_tenant()).owner)
    bodies = {
        ("POST", "/messages"): user_message("x"),
        ("POST", "/messages/import"): {"messages": [user_message("x")]},
        ("POST", "/threads"): {"title": "x"},
        ("PATCH", "/threads/{thread_id}"): {"title": "x"},
        ("POST", "/messages/{message_id}/reactions"): {"emoji": "x"},
        ("PATCH", ""): {"summary": "stolen"},
        ("POST", "/typing"): {"state": "start"},
        ("POST", "/handoff"): {"to": "human"},
        ("POST", "/assign"): {"assignee_id": None},
        ("POST", "/notes"): {"body": "x"},
    }
    tried = 0
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/v1/conversations/{conversation_id}"):
            continue
        rest = path.removeprefix("/v1/conversations/{conversation_id}")
        for method in operations:
            concrete = url + rest.format(
                thread_id=thread["id"], message_id=message["id"], note_id=message["id"]
            )
            body = bodies.get((method.upper(), rest), {})
            response = await client.request(method.upper(), concrete, headers=stranger, json=body)
            assert response.status_code == 404, (method, path, response.text)
            tried += 1
    assert tried >= 12
    listed = (await client.get("/v1/conversations", headers=stranger)).json()["data"]
    assert conversation["id"] not in [c["id"] for c in listed]
    unchanged = (await client.get(url, headers=headers)).json()
    assert unchanged["status"] == "active"
    assert unchanged["summary"] is None
    stats = (await client.get(
        "/v1/analytics/conversations", headers=stranger,
        params={"since": "2000-01-01T00:00:00Z"},
    )).json()  # fmt: skip
    assert stats["groups"] == []
    assert stats["messages"] == []


def test_the_watch_catches_an_unscoped_query(stack: Any) -> None:
    import pymongo

    client: pymongo.MongoClient[Json] = pymongo.MongoClient(stack.mongodb_uri)
    try:
        messages = client["syntera_watch_check"]["messages"]
        messages.find_one({"conversation_id": "x"})
        assert watch.violations == ["find on messages with filter {'conversation_id': 'x'}"]
        watch.violations.clear()
        # The tenant alone is not the shard key's prefix for a message lookup.
        messages.find_one({"company_id": "c", "_id": 1})
        assert watch.violations == [
            "find on messages without the shard key's ['company_id', 'conversation_id']: "
            "{'company_id': 'c', '_id': 1}"
        ]
    finally:
        watch.violations.clear()
        client.close()


async def test_mongodb_down_is_a_503_and_nothing_is_recorded(
    settings: Any, api_urls: Any, auth: AuthHeaders, tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    import dataclasses
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from syntera.app import create_app

    down = dataclasses.replace(
        api_urls, mongodb_uri=f"mongodb://127.0.0.1:{port}/?directConnection=true"
    )
    app = create_app(settings.model_copy(update={"mongodb_server_selection_timeout_ms": 300}), down)
    before = owner_conn.execute("SELECT count(*) FROM analytics_events").fetchone()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://down") as http:
            started = asyncio.get_running_loop().time()
            response = await http.post(
                "/v1/conversations", headers=auth(tenant.member),
                json={"agent_id": str(tenant.rows["agent_configs"])},
            )  # fmt: skip
            elapsed = asyncio.get_running_loop().time() - started
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert elapsed < 5
    after = owner_conn.execute("SELECT count(*) FROM analytics_events").fetchone()
    assert before == after  # the event of the conversation that was not stored rolled back


@pytest.mark.parametrize("key", ["bad\x00key", "$where", "a.b"])
async def test_metadata_keys_mongodb_cannot_store_are_a_422(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany, key: str
) -> None:
    response = await client.post(
        "/v1/conversations", headers=headers,
        json={"agent_id": str(tenant.rows["agent_configs"]), "metadata": {"x": {key: 1}}},
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "metadata"


async def test_integers_mongodb_cannot_store_are_a_422(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    response = await client.post(
        "/v1/conversations", headers=headers,
        json={"agent_id": str(tenant.rows["agent_configs"]), "metadata": {"n": 2**64}},
    )  # fmt: skip
    assert response.status_code == 422, response.text


async def test_a_message_in_the_seeds_shape_takes_its_role_from_the_sender(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    conversation = await start(client, headers, tenant)
    url = f"/v1/conversations/{conversation['id']}/messages"
    for sender, role in (("user", "user"), ("agent", "assistant"), ("system", "system")):
        seed_shaped = {"sender_type": sender, "content": "hi", "message_type": "text"}
        posted = await client.post(url, headers=headers, json=seed_shaped)
        assert posted.status_code == 201, posted.text
        assert posted.json()["role"] == role
    explicit = {"sender_type": "agent", "role": "system", "content": "note"}
    assert (await client.post(url, headers=headers, json=explicit)).json()["role"] == "system"
    unknown = await client.post(url, headers=headers, json={"sender_type": "bot", "content": "x"})
    assert unknown.status_code == 422
    assert "sender_type" in unknown.text


async def test_conversation_statistics_default_to_the_last_30_days(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    await start(client, headers, tenant)
    answer = await client.get("/v1/analytics/conversations", headers=headers)
    assert answer.status_code == 200, answer.text
    since = datetime.fromisoformat(answer.json()["since"])
    assert abs((datetime.now(UTC) - since) - timedelta(days=30)) < timedelta(minutes=5)
    assert sum(group["conversations"] for group in answer.json()["groups"]) >= 1


async def test_a_message_whose_transaction_fails_is_taken_back_from_mongodb(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    """The analytics event of a message is sent with the COMMIT, after the message is in
    MongoDB; when it fails (here: the conversation's agent was deleted under it, so the
    event's reference is refused), nothing of the request stays: no event, no message."""
    agent = await post(client, "/v1/agents", headers,
                       {"name": "Short-lived", "system_prompt": "Be brief"})  # fmt: skip
    conversation = await post(client, "/v1/conversations", headers, {"agent_id": agent["id"]})
    base = f"/v1/conversations/{conversation['id']}"
    url = f"{base}/messages"
    thread = await post(client, f"{base}/threads", headers, {"title": "Returns"})
    await post(client, url, headers, user_message("first", thread_id=thread["id"]))
    owner_conn.execute("DELETE FROM public.agent_configs WHERE id = %s", (agent["id"],))
    refused = await client.post(url, headers=headers,
                                json=user_message("second", thread_id=thread["id"]))  # fmt: skip
    assert 400 <= refused.status_code < 500, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    page = await client.get(url, headers=headers)
    assert [m["content"] for m in page.json()["data"]] == ["first"]
    threads = (await client.get(f"{base}/threads", headers=headers)).json()
    assert [t["message_count"] for t in threads] == [1]
    assert events(owner_conn, conversation["id"]).count("message.received") == 1


async def test_a_cursor_from_the_first_years_is_read_not_a_500(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    raw = orjson.dumps(["0001-01-01T00:00:01+00:00", "0" * 24])
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = await client.get("/v1/conversations", headers=headers, params={"cursor": cursor})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []
