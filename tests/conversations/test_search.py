"""GET /v1/conversations/search: the message index (kept by every write path, purged with
the company and the contact, rebuilt by a command), ranking, highlighting, paging,
filters, isolation and bad input."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pymongo
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.conversations.reindex import reindex_company
from syntera.db.postgres import TenantConnection
from syntera.embedded import StackUrls
from syntera.ops.retention import purge_archived_conversations, unindex_expired_messages
from syntera.unit_of_work import open_unit_of_work
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.conftest import StackDatabase
from tests.factories import SeededCompany

Json = dict[str, Any]
SEARCH = "/v1/conversations/search"


async def created(client: httpx.AsyncClient, headers: dict[str, str], path: str, body: Any) -> Any:
    response = await client.post(path, headers=headers, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def conversation(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany, **extra: Any
) -> str:
    body = {"agent_id": str(tenant.rows["agent_configs"]), **extra}
    return str((await created(client, headers, "/v1/conversations", body))["id"])


def said(text: str, sender: str = "user") -> Json:
    role = {"user": "user", "agent": "assistant", "system": "system"}[sender]
    return {"sender_type": sender, "role": role, "content": text}


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], conversation_id: str, text: str
) -> Json:
    path = f"/v1/conversations/{conversation_id}/messages"
    result: Json = await created(client, headers, path, said(text))
    return result


async def search(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> Json:
    response = await client.get(SEARCH, headers=headers, params=params)
    assert response.status_code == 200, response.text
    result: Json = response.json()
    return result


def indexed(owner_conn: psycopg.Connection, where: str, *params: Any) -> int:
    query = f"SELECT count(*) FROM public.message_search WHERE {where}"  # noqa: S608 (tests' own)
    row = owner_conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


FILLER = [
    "Hello, I have a question about my order",
    "Sure, what is your order number?",
    "It is 4411, the parcel has not arrived yet",
    "Let me check the delivery status for you",
]


@pytest.mark.slow
async def test_a_word_said_once_in_10000_messages_is_found_and_nothing_of_another_company(
    client: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    headers, other_headers = auth(tenant.member), auth(other.member)
    long_one = await conversation(client, headers, tenant)
    needle = 7_321
    for start in range(0, 10_000, 1000):
        batch = [
            said("My cat is called Zanzibar, can you ship to her?" if i == needle
                 else f"{FILLER[i % 4]} ({i})", "user" if i % 2 else "agent")
            for i in range(start, start + 1000)
        ]  # fmt: skip
        await created(client, headers, f"/v1/conversations/{long_one}/messages/import",
                      {"messages": batch})  # fmt: skip
    theirs = await conversation(client, other_headers, other)
    their_message = await post(client, other_headers, theirs, "Zanzibar is lovely in June")

    started = time.perf_counter()
    found = await search(client, headers, q="zanzibar")
    assert time.perf_counter() - started < 2
    assert len(found["items"]) == 1
    [hit] = found["items"]
    assert hit["conversation_id"] == long_one
    assert "<mark>Zanzibar</mark>" in hit["fragment"]
    assert found["next_cursor"] is None

    theirs_found = await search(client, other_headers, q="zanzibar")
    assert [h["message_id"] for h in theirs_found["items"]] == [their_message["id"]]
    # A word in every message is answered too, a bounded page with a cursor.
    everywhere = await search(client, headers, q="order question delivery parcel or number")
    assert len(everywhere["items"]) == 20
    assert everywhere["next_cursor"] is not None
    following = await search(client, headers, q="order question delivery parcel or number",
                             cursor=everywhere["next_cursor"])  # fmt: skip
    assert len(following["items"]) == 20
    first_ids = {h["message_id"] for h in everywhere["items"]}
    assert not first_ids & {h["message_id"] for h in following["items"]}
    assert following["items"][0]["score"] <= everywhere["items"][-1]["score"]


async def test_fragments_are_escaped_html_with_the_matches_marked(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    headers = auth(tenant.member)
    oid = await conversation(client, headers, tenant)
    await post(
        client,
        headers,
        oid,
        'Is 3 < 5 & is a refund \ue000 due? <script>alert("x")</script><b>refund</b> now',
    )
    [hit] = (await search(client, headers, q="refund"))["items"]
    print(repr(hit["fragment"]))
    # Markup of the message never reaches the fragment as markup; its text is escaped.
    without_marks = hit["fragment"].replace("<mark>", "").replace("</mark>", "")
    assert "<" not in without_marks
    assert ">" not in without_marks
    assert "3 &lt; 5 &amp; is a <mark>refund</mark>" in hit["fragment"]
    assert hit["fragment"].count("<mark>") == hit["fragment"].count("</mark>") >= 1
    assert hit["sender_type"] == "user"
    assert hit["contact_name"].startswith("Visitor ")
    assert hit["score"] > 0


async def test_results_are_ranked_paged_and_filtered(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    headers = auth(tenant.member)
    contact = await created(client, headers, "/v1/contacts",
                            {"first_name": "Ada", "last_name": "Lovelace"})  # fmt: skip
    chat = await conversation(client, headers, tenant, contact_id=contact["id"])
    mail = await conversation(client, headers, tenant, channel="email")
    best = await post(client, headers, chat, "refund refund refund: the refund I asked for")
    ids = {best["id"]}
    for text in ("where is my refund", "a refund, please", "no refund yet?"):
        ids.add((await post(client, headers, mail, text))["id"])
    await post(client, headers, mail, "nothing to see here")

    first = await search(client, headers, q="refunds")  # stemmed: refunds finds refund
    assert first["items"][0]["message_id"] == best["id"]
    assert first["items"][0]["contact_name"] == "Ada Lovelace"
    assert {h["message_id"] for h in first["items"]} == ids
    scores = [h["score"] for h in first["items"]]
    assert scores == sorted(scores, reverse=True)

    seen: list[str] = []
    cursor = None
    while True:
        page = await search(client, headers, q="refund", limit=1,
                            **({"cursor": cursor} if cursor else {}))  # fmt: skip
        seen += [h["message_id"] for h in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(ids)

    by_channel = await search(client, headers, q="refund", channel="email")
    assert len(by_channel["items"]) == 3
    by_contact = await search(client, headers, q="refund", contact_id=contact["id"])
    assert [h["message_id"] for h in by_contact["items"]] == [best["id"]]
    by_agent = await search(client, headers, q="refund", agent_id=str(tenant.rows["agent_configs"]))
    assert len(by_agent["items"]) == 4
    later = await search(client, headers, q="refund", **{"from": "2999-01-01T00:00:00Z"})
    assert later["items"] == []
    earlier = await search(client, headers, q="refund", to="2999-01-01T00:00:00Z")
    assert len(earlier["items"]) == 4
    phrase = await search(client, headers, q='"refund, please"')
    assert len(phrase["items"]) == 1
    without = await search(client, headers, q="refund -please")
    assert len(without["items"]) == 3

    named = await search(client, headers, q="lovel")
    assert [c["id"] for c in named["contacts"]] == [contact["id"]]


async def test_the_index_follows_every_write_path(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    headers = auth(tenant.member)
    oid = await conversation(client, headers, tenant)
    # The visitor asks for a person: the system's line is stored (an append of the system).
    await post(client, headers, oid, "can I talk to a real person")
    found = await search(client, headers, q="passing team")
    assert [h["sender_type"] for h in found["items"]] == ["system"]

    contact = await created(client, headers, "/v1/contacts", {"email": "moved@example.com"})
    patched = await client.patch(f"/v1/conversations/{oid}", headers=headers,
                                 json={"contact_id": contact["id"]})  # fmt: skip
    assert patched.status_code == 200
    assert indexed(owner_conn, "conversation_id = %s AND contact_id = %s", oid, contact["id"]) == 2
    by_contact = await search(client, headers, q="person", contact_id=contact["id"])
    assert len(by_contact["items"]) == 1
    assert by_contact["items"][0]["contact_name"] == "moved@example.com"

    # A refused post (the conversation ended) indexes nothing.
    await created(client, headers, f"/v1/conversations/{oid}/end", {})
    refused = await client.post(f"/v1/conversations/{oid}/messages", headers=headers,
                                json=said("late xylophone"))  # fmt: skip
    assert refused.status_code == 409
    assert indexed(owner_conn, "content LIKE %s", "%xylophone%") == 0


async def test_another_company_finds_nothing_of_this_one(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany,
    tenant_b: SeededCompany, api_pool: AsyncConnectionPool[TenantConnection],
) -> None:  # fmt: skip
    headers = auth(tenant_a.member)
    contact = await created(client, headers, "/v1/contacts", {"email": "quokka@example.com"})
    oid = await conversation(client, headers, tenant_a, contact_id=contact["id"])
    await post(client, headers, oid, "the quokka password is hunter2")
    assert len((await search(client, headers, q="quokka"))["items"]) == 1

    stranger = auth(tenant_b.owner)
    assert (await search(client, stranger, q="quokka")) == {
        "items": [], "next_cursor": None, "contacts": [],
    }  # fmt: skip
    filtered = await search(client, stranger, q="quokka", contact_id=contact["id"])
    assert filtered["items"] == []
    # The database holds it too: B's member reads no row of A, even without a filter.
    async with open_unit_of_work(api_pool, tenant_b.member) as tx:
        rows = await (
            await tx.conn.execute("SELECT company_id FROM public.message_search")
        ).fetchall()
        assert {row["company_id"] for row in rows} <= {tenant_b.company_id}


async def test_a_member_cannot_write_the_index_of_another_company(
    api_pool: AsyncConnectionPool[TenantConnection], tenant_a: SeededCompany,
    tenant_b: SeededCompany,
) -> None:  # fmt: skip
    rows = (
        '[{"message_id": "x", "conversation_id": "y", "channel": "chat",'
        ' "sender_type": "user", "created_at": "2026-01-01T00:00:00Z", "content": "forged"}]'
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with open_unit_of_work(api_pool, tenant_b.member) as tx:
            await tx.conn.execute(
                "SELECT private.index_messages(%s, %s::jsonb)", (tenant_a.company_id, rows)
            )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with open_unit_of_work(api_pool, tenant_b.member) as tx:
            await tx.conn.execute(
                "INSERT INTO public.message_search (company_id, id, conversation_id,"
                " channel, sender_type, created_at, content)"
                " VALUES (%s, 'x', 'y', 'chat', 'user', now(), 'forged')",
                (tenant_b.company_id,),
            )


@pytest.mark.parametrize(
    ("q", "field"),
    [
        ("x" * 10_000, "q"),
        ("", "q"),
        ("the and of", "q"),  # only stop words
        (".*[(+?\\^$|)]\\", "q"),  # only punctuation
    ],
)
async def test_bad_queries_are_a_422_naming_q(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany, q: str, field: str
) -> None:
    response = await client.get(SEARCH, headers=auth(tenant_a.member), params={"q": q})
    assert response.status_code == 422, response.text
    assert field in response.text


@pytest.mark.parametrize(
    "q",
    [
        "refund.*(",  # regex metacharacters around a word
        ".*[(+?\\^$|)]{2}",
        "a & b | !c :* <-> (d",  # tsquery operators are only text
        "'; DROP TABLE public.message_search; --",
        '"unclosed phrase',
        "-",
        "or or or",
        "naïve café 東京",
    ],
)
async def test_operators_and_metacharacters_are_only_text(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany, q: str
) -> None:
    response = await client.get(SEARCH, headers=auth(tenant_a.member), params={"q": q})
    assert response.status_code in (200, 422), response.text


async def test_bad_cursors_filters_and_pages_are_422(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany
) -> None:
    headers = auth(tenant_a.member)
    for params in (
        {"q": "x", "cursor": "not-a-cursor"},
        {"q": "x", "cursor": "WzEsMl0"},  # valid base64 of [1,2]
        {"q": "x", "limit": 0},
        {"q": "x", "limit": 51},
        {"q": "x", "channel": "fax"},
        {"q": "x", "agent_id": "nope"},
        {"q": "x", "from": "yesterday"},
    ):
        response = await client.get(SEARCH, headers=headers, params=params)
        assert response.status_code == 422, (params, response.text)
    # The path is not taken for a conversation's id: without q it is a 422, not a 404.
    assert (await client.get(SEARCH, headers=headers)).status_code == 422
    assert (await client.get(SEARCH, params={"q": "x"})).status_code == 401


async def test_erasing_a_contact_or_deleting_the_company_leaves_nothing_in_the_index(
    client: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    admin = auth(tenant.admin)
    erased = await created(client, admin, "/v1/contacts", {"email": "gone@example.com"})
    kept = await created(client, admin, "/v1/contacts", {"email": "kept@example.com"})
    theirs = await conversation(client, admin, tenant, contact_id=erased["id"])
    mine = await conversation(client, admin, tenant, contact_id=kept["id"])
    await post(client, admin, theirs, "my passport number is 123456789")
    await post(client, admin, mine, "my passport expired")
    assert indexed(owner_conn, "contact_id = %s", erased["id"]) == 1

    answer = await client.post(f"/v1/contacts/{erased['id']}/erase", headers=admin)
    assert answer.status_code == 202, answer.text
    assert indexed(owner_conn, "contact_id = %s", erased["id"]) == 0
    assert indexed(owner_conn, "content LIKE %s", "%123456789%") == 0
    # Until the purge removes the conversation, what is still posted to it stays out.
    late = await client.post(f"/v1/conversations/{theirs}/messages", headers=admin,
                             json=said("my passport again 987654321"))  # fmt: skip
    if late.status_code == 201:
        assert indexed(owner_conn, "content LIKE %s", "%987654321%") == 0
    found = await search(client, admin, q="passport")
    assert [h["conversation_id"] for h in found["items"]] == [mine]

    assert indexed(owner_conn, "company_id = %s", tenant.company_id) == 1
    deleted = await client.delete("/v1/companies/current", headers=auth(tenant.owner))
    assert deleted.status_code == 204, deleted.text
    assert indexed(owner_conn, "company_id = %s", tenant.company_id) == 0


async def test_reindex_rebuilds_a_company_from_mongodb(
    app: FastAPI, client: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    owner_conn: psycopg.Connection, api_pool: AsyncConnectionPool[TenantConnection],
) -> None:  # fmt: skip
    tenant, other = await make_tenant(), await make_tenant()
    headers = auth(tenant.member)
    oid = await conversation(client, headers, tenant)
    batch = [said(f"history line {i} about penguins") for i in range(30)]
    await created(client, headers, f"/v1/conversations/{oid}/messages/import",
                  {"messages": batch})  # fmt: skip
    other_oid = await conversation(client, auth(other.member), other)
    await post(client, auth(other.member), other_oid, "penguins too")
    owner_conn.execute("DELETE FROM public.message_search WHERE company_id = %s AND"
                       " id IN (SELECT id FROM public.message_search"
                       " WHERE company_id = %s LIMIT 20)",
                       (tenant.company_id, tenant.company_id))  # fmt: skip
    owner_conn.execute(
        "INSERT INTO public.message_search (company_id, id, conversation_id, channel,"
        " sender_type, created_at, content) VALUES (%s, 'gone', %s, 'chat', 'user', now(),"
        " 'penguins that were deleted')", (tenant.company_id, oid),
    )  # fmt: skip
    assert indexed(owner_conn, "company_id = %s", tenant.company_id) == 11

    steps: list[tuple[str, int, int | None]] = []
    done = await reindex_company(
        api_pool, app.state.conversations, tenant.company_id,
        lambda step, n, total: steps.append((step, n, total)),
    )  # fmt: skip
    assert done == 30
    assert steps[-1][1:] == (30, 30)
    assert indexed(owner_conn, "company_id = %s", tenant.company_id) == 30
    assert indexed(owner_conn, "id = 'gone'") == 0
    assert indexed(owner_conn, "company_id = %s", other.company_id) == 1
    assert len((await search(client, headers, q="penguins", limit=50))["items"]) == 30


def test_the_reindex_command_names_its_company_and_shows_progress(
    api_urls: StackUrls, owner_conn: psycopg.Connection
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(api_urls.as_env(), COLUMNS="200")

    def syntera(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syntera", "maintenance", "reindex-messages", *args],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    assert syntera().returncode == 2  # neither --company nor --all
    assert syntera("--company", "nope").returncode == 2
    missing = syntera("--company", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1
    assert "no company" in missing.stderr
    row = owner_conn.execute("SELECT id FROM public.companies LIMIT 1").fetchone()
    assert row is not None
    one = syntera("--company", str(row[0]))
    assert one.returncode == 0, one.stderr
    assert "messages indexed in 1 companies" in one.stdout
    assert f"company {row[0]}" in one.stderr  # the progress bar names it


@pytest.mark.unscoped_mongo("retention reads every company's archived conversations")
async def test_retention_takes_purged_and_expired_messages_out_of_the_index(
    stack: StackUrls, database: StackDatabase, settings: Settings, tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    old = datetime.now(UTC) - timedelta(days=400)
    mongo_settings = settings.model_copy(update={"mongodb_db": f"ret_{uuid.uuid4().hex[:8]}"})
    company = str(tenant.company_id)
    with pymongo.MongoClient(stack.mongodb_uri, tz_aware=True) as client:
        db = client[mongo_settings.mongodb_db]
        archived, active = db["conversations"].insert_many([
            {"company_id": company, "status": "archived", "updated_at": old},
            {"company_id": company, "status": "active", "updated_at": old},
        ]).inserted_ids  # fmt: skip
    for message_id, conversation_id, at in (
        ("m1", archived, datetime.now(UTC)), ("m2", active, datetime.now(UTC)), ("m3", active, old),
    ):  # fmt: skip
        owner_conn.execute(
            "INSERT INTO public.message_search (company_id, id, conversation_id, channel,"
            " sender_type, created_at, content) VALUES (%s, %s, %s, 'chat', 'user', %s, 'x')",
            (tenant.company_id, message_id, str(conversation_id), at),
        )
    await purge_archived_conversations(
        database.owner_url, mongo_settings, stack.mongodb_uri, timedelta(days=90), print
    )
    assert unindex_expired_messages(database.owner_url, timedelta(days=365)) >= 1
    rows = owner_conn.execute(
        "SELECT id FROM public.message_search WHERE company_id = %s", (tenant.company_id,)
    ).fetchall()
    assert [row[0] for row in rows] == ["m2"]


async def test_a_message_holding_a_nul_character_is_stored_and_found(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    headers = auth(tenant.member)
    chat = await conversation(client, headers, tenant)
    sent = await post(client, headers, chat, "paste from a terminal\u0000 zephyrine")
    assert sent["content"] == "paste from a terminal\u0000 zephyrine"  # stored as it came
    found = await search(client, headers, q="zephyrine")
    assert [hit["message_id"] for hit in found["items"]] == [sent["id"]]


async def test_a_phrase_of_common_words_is_walked_for_and_one_with_a_rare_word_indexed(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    make_tenant: MakeTenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A phrase's GIN matches are every message holding its words, each read again to
    check their order: a phrase of common words is found by walking the newest messages
    (as far as its density says), a rare one of common words only among the newest
    PHRASE_ROWS (its dates reach older ones), and one with a rare word by the index."""
    from syntera.conversations import search as module

    sizes = {"WINDOW": 30, "RECENT_ROWS": 40, "PHRASE_MIN_FOUND": 3, "PHRASE_ROWS": 200,
             "SAMPLE_ROWS": 20, "COMMON_IN_SAMPLE": 5}  # fmt: skip
    for name, value in sizes.items():
        monkeypatch.setattr(module, name, value)
    tenant = await make_tenant()
    headers = auth(tenant.member)
    chat = await conversation(client, headers, tenant)
    path = f"/v1/conversations/{chat}/messages/import"
    old = [said("a red moon over zanzibar"), said("the zanzibar moon rose")]
    await created(client, headers, path, {"messages": old})
    await asyncio.sleep(0.01)  # the next batch is stored a later millisecond
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.01)
    newer = [
        said(f"blue sky and moon red ({i})" if i % 4 == 0 else f"sky blue and moon red ({i})")
        for i in range(400)
    ]
    await created(client, headers, path, {"messages": newer})

    often = await search(client, headers, q='"blue sky"')
    assert len(often["items"]) == 20
    assert all("<mark>blue</mark> <mark>sky</mark>" in h["fragment"] for h in often["items"])
    walked = module.SearchCursor.decode(often["next_cursor"])
    assert walked.recent == 30 * 40 * 3 // (2 * 10)  # ten in the first 40: 180 walked
    following = await search(client, headers, q='"blue sky"', cursor=often["next_cursor"])
    assert {h["message_id"] for h in following["items"]}.isdisjoint(
        {h["message_id"] for h in often["items"]}
    )

    assert (await search(client, headers, q='"red moon"'))["items"] == []  # beyond the walk
    dated = await search(client, headers, q='"red moon"', to=boundary.isoformat())
    assert [h["fragment"] for h in dated["items"]] == [
        "a <mark>red</mark> <mark>moon</mark> over zanzibar"
    ]
    rare = await search(client, headers, q='"zanzibar moon"')
    assert [h["fragment"] for h in rare["items"]] == [
        "the <mark>zanzibar</mark> <mark>moon</mark> rose"
    ]
