"""Who may open which stream, what each receives, and streams that end when access does."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from bson import ObjectId

from syntera.api.log_redaction import redact
from syntera.app import create_app
from syntera.auth.tokens import issue_access_token, load_keys
from syntera.config import Settings
from syntera.conversations.store import scoped
from syntera.db.mongo import create_mongo_client
from syntera.embedded import StackUrls
from syntera.events.model import message_for_visitor
from tests.api_fixtures import AuthHeaders, serving
from tests.events.test_member_streams import start
from tests.events_helpers import refused, subscribe
from tests.factories import SeededCompany
from tests.widget.helpers import WidgetChat, open_chat, start_chat


async def chat_of(http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany) -> WidgetChat:
    return await open_chat(http, auth(tenant.member), tenant.rows["agent_configs"])


async def another_chat(http: httpx.AsyncClient, chat: WidgetChat) -> WidgetChat:
    """A second visitor's chat through the same widget key."""
    started = await start_chat(http, chat.session["X-Api-Key"])
    return WidgetChat(
        {"X-Api-Key": chat.session["X-Api-Key"], "X-Widget-Session": started["session_token"]},
        f"/v1/public/conversations/{started['conversation']['id']}",
    )


def conversation_of(chat: WidgetChat) -> str:
    return chat.url.rsplit("/", 1)[-1]


async def test_visitor_sees_their_chat_as_a_customer_may_and_nothing_else(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    chat = await chat_of(http, auth, tenant)
    other = await another_chat(http, chat)
    ours = conversation_of(chat)
    async with subscribe(http, f"{chat.url}/events", headers=chat.session) as stream:
        for target in (other, chat):
            sent = await http.post(
                f"{target.url}/messages", headers=target.session, json={"content": "hello"}
            )
            assert sent.status_code == 201
        reply = await http.post(
            f"/v1/conversations/{ours}/messages",
            headers=member,
            json={"sender_type": "agent", "content": "Hi! How can I help?"},
        )
        await http.patch(
            f"/v1/conversations/{ours}", headers=member, json={"summary": "angry customer"}
        )
        typing = await http.post(
            f"/v1/conversations/{ours}/typing", headers=member, json={"state": "start"}
        )
        assert typing.status_code == 204
        await http.post(f"/v1/conversations/{ours}/end", headers=member)
        mine, agent, typed, ended = await stream.events(4)
        await stream.nothing_within(0.5)
    assert (mine.event, mine.data["data"]["content"]) == ("message.created", "hello")
    assert mine.data["conversation_id"] == ours
    assert agent.data["data"] == message_for_visitor(reply.json())
    assert "sender_id" not in agent.data["data"]  # which teammate wrote it is the team's
    assert typed.event == "typing"
    assert typed.id is None  # ephemeral: never stored, never replayed
    assert typed.data["data"] == {"state": "start", "by": "member"}  # not which teammate
    assert ended.event == "conversation.ended"
    assert ended.data["data"]["status"] == "ended"
    assert "summary" not in ended.data["data"]  # the team's notes stay the team's


async def test_widget_credentials_work_as_query_parameters(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    chat = await chat_of(http, auth, tenant)
    params = {"key": chat.session["X-Api-Key"], "session": chat.session["X-Widget-Session"]}
    async with subscribe(http, f"{chat.url}/events", params=params) as stream:
        await http.post(f"{chat.url}/messages", headers=chat.session, json={"content": "q"})
        assert (await stream.next()).event == "message.created"


async def test_a_session_on_another_chats_stream_is_404_and_bad_credentials_401(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany
) -> None:
    chat = await chat_of(http, auth, tenant)
    other = await another_chat(http, chat)
    theirs = await chat_of(http, auth, tenant_b)
    wrong_chat = await refused(http, f"{other.url}/events", headers=chat.session)
    assert wrong_chat.status_code == 404
    other_company = await refused(http, f"{theirs.url}/events", headers=chat.session)
    assert other_company.status_code in (401, 404)
    no_session = {"X-Api-Key": chat.session["X-Api-Key"]}
    assert (await refused(http, f"{chat.url}/events", headers=no_session)).status_code == 401
    assert (await refused(http, f"{chat.url}/events")).status_code == 401


async def test_revoked_widget_session_ends_its_stream(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    chat = await chat_of(http, auth, tenant)
    async with subscribe(http, f"{chat.url}/events", headers=chat.session) as stream:
        ended = await http.delete(f"{chat.url}/session", headers=chat.session)
        assert ended.status_code == 204
        reason = await stream.end_reason(within=5)
    assert "session" in reason


async def test_disabled_agent_ends_its_widget_streams(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    chat = await chat_of(http, auth, tenant)
    async with subscribe(http, f"{chat.url}/events", headers=chat.session) as stream:
        agent = tenant.rows["agent_configs"]
        await http.patch(
            f"/v1/agents/{agent}", headers=auth(tenant.member), json={"enabled": False}
        )
        events = await stream.until_end(within=5)
    await http.patch(f"/v1/agents/{agent}", headers=auth(tenant.member), json={"enabled": True})
    assert [event.event for event in events] == ["end"]


async def test_removed_member_stops_receiving(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    async with subscribe(http, "/v1/events", headers=auth(tenant.member)) as stream:
        removed = await http.delete(f"/v1/team/{tenant.member.user_id}", headers=auth(tenant.owner))
        assert removed.status_code == 204
        seen = await stream.until_end(within=5)
        assert not stream.ended or seen[-1].event == "end"
    assert [event.event for event in seen] == ["end"]
    assert "member" in seen[0].data["reason"]


async def test_expired_token_ends_the_stream(
    http: httpx.AsyncClient, settings: Settings, tenant: SeededCompany
) -> None:
    assert tenant.member.user_id is not None
    token = issue_access_token(
        load_keys(settings), user_id=tenant.member.user_id, email=None,
        session_id=tenant.member.user_id, lifetime_s=2, issuer="http://api.test/auth/v1",
        user_metadata={}, app_metadata={},
    ).token  # fmt: skip
    async with subscribe(http, "/v1/events", params={"access_token": token}) as stream:
        reason = await stream.end_reason(within=6)
    assert "expired" in reason


async def test_open_streams_are_limited_per_user_and_per_chat(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    async with (
        subscribe(http, "/v1/events", headers=member),
        subscribe(http, "/v1/events", headers=member),
        subscribe(http, "/v1/events", headers=member),
    ):
        over = await refused(http, "/v1/events", headers=member)
        assert over.status_code == 429
        assert "per user" in over.text
        assert over.headers["Retry-After"]
        # Another member of the company is not held to this member's streams.
        async with subscribe(http, "/v1/events", headers=auth(tenant.admin)):
            pass
    await asyncio.sleep(0.2)  # the slots are freed as the streams close
    async with subscribe(http, "/v1/events", headers=member):
        pass
    chat = await chat_of(http, auth, tenant)
    async with (
        subscribe(http, f"{chat.url}/events", headers=chat.session),
        subscribe(http, f"{chat.url}/events", headers=chat.session),
    ):
        over = await refused(http, f"{chat.url}/events", headers=chat.session)
        assert over.status_code == 429
        assert "per chat" in over.text


async def test_typing_is_validated_rate_limited_and_isolated(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany
) -> None:
    member = auth(tenant.member)
    chat = await chat_of(http, auth, tenant)
    url = f"/v1/conversations/{conversation_of(chat)}/typing"
    bad = await http.post(url, headers=member, json={"state": "typing"})
    assert bad.status_code == 422
    assert "state" in bad.text
    theirs = await http.post(url, headers=auth(tenant_b.member), json={"state": "start"})
    assert theirs.status_code == 404
    async with subscribe(http, "/v1/events", headers=member) as stream:
        visitor = await http.post(
            f"{chat.url}/typing", headers=chat.session, json={"state": "start"}
        )
        assert visitor.status_code == 204
        typed = await stream.next()
    assert typed.data["data"] == {"state": "start", "by": "visitor"}
    answers = [
        (await http.post(url, headers=member, json={"state": "stop"})).status_code for _ in range(6)
    ]
    assert answers == [204] * 5 + [429]
    missing = await http.post(
        f"/v1/conversations/{'0' * 24}/typing", headers=member, json={"state": "start"}
    )
    assert missing.status_code == 404


async def test_credentials_in_the_query_reach_no_log_line_or_metric(
    stream_settings: Settings,
    api_urls: StackUrls,
    auth: AuthHeaders,
    tenant: SeededCompany,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = auth(tenant.member)["Authorization"].removeprefix("Bearer ")
    # uvicorn's access log on, into the test's log capture (no logging config of its own).
    app = create_app(stream_settings, api_urls)
    access = logging.getLogger("uvicorn.access")
    access.addHandler(caplog.handler)  # uvicorn's own config may stop it propagating
    with (
        caplog.at_level(logging.DEBUG),
        caplog.at_level(logging.INFO, "uvicorn.access"),
        serving(app, access_log=True, log_config=None, log_level="info") as url,
    ):
        async with httpx.AsyncClient(base_url=url, timeout=15) as http:
            chat = await chat_of(http, auth, tenant)
            session = chat.session["X-Widget-Session"]
            async with subscribe(http, "/v1/events", params={"access_token": token}) as stream:
                await start(http, auth(tenant.member), tenant.rows["agent_configs"])
                await stream.next()
            params = {"key": chat.session["X-Api-Key"], "session": session}
            async with subscribe(http, f"{chat.url}/events", params=params):
                pass
            metrics = (await http.get("/metrics")).text
    access.removeHandler(caplog.handler)
    # What the server logged (the test's own HTTP client logs its URLs: not the server).
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    assert "GET /v1/events?access_token=[redacted]" in logged  # the access log saw it...
    for secret in (token, session):
        assert secret not in logged  # ...but not the credentials
        assert secret not in metrics
    assert 'route="/v1/events"' in metrics


def test_redaction_keeps_the_rest_of_the_query() -> None:
    assert redact("/v1/events?types=typing&access_token=abc.def&x=1") == (
        "/v1/events?types=typing&access_token=[redacted]&x=1"
    )
    assert redact("/e?session=s1&key=pub_key_2") == "/e?session=[redacted]&key=[redacted]"
    assert redact("/v1/contacts?search=monkey=1") == "/v1/contacts?search=monkey=1"


async def test_a_deleted_conversation_ends_its_streams(
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    settings: Settings,
    api_urls: StackUrls,
) -> None:
    """As erasing a contact will: the conversation's document goes from MongoDB."""
    chat = await chat_of(http, auth, tenant)
    conversation = conversation_of(chat)
    mongo = create_mongo_client(settings, api_urls.mongodb_uri)
    try:
        async with (
            subscribe(http, f"{chat.url}/events", headers=chat.session) as visitor,
            subscribe(
                http, "/v1/events", headers=auth(tenant.member),
                params={"conversation_id": conversation},
            ) as member,
        ):  # fmt: skip
            deleted = await mongo[settings.mongodb_db]["conversations"].delete_one(
                scoped(tenant.company_id, _id=ObjectId(conversation))
            )
            assert deleted.deleted_count == 1
            for stream in (visitor, member):
                assert "conversation" in await stream.end_reason(within=6)
    finally:
        await mongo.close()


async def test_typing_on_a_path_that_is_no_conversation_is_404(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    chat = await chat_of(http, auth, tenant)
    for path in ("a:b", "not-an-id", "%F0%9F%98%80"):
        member = await http.post(
            f"/v1/conversations/{path}/typing", headers=auth(tenant.member), json={"state": "start"}
        )
        assert member.status_code == 404, member.text
        visitor = await http.post(
            f"/v1/public/conversations/{path}/typing", headers=chat.session,
            json={"state": "start"},
        )  # fmt: skip
        assert visitor.status_code == 404, visitor.text


async def test_visitors_have_their_own_stream_slots_and_never_take_the_teams(
    stream_settings: Settings,
    api_urls: StackUrls,
    auth: AuthHeaders,
    tenant: SeededCompany,
    tenant_b: SeededCompany,
) -> None:
    limits = {"events_streams_per_company": 2, "events_visitor_streams_per_company": 2}
    app = create_app(stream_settings.model_copy(update=limits), api_urls)
    with serving(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=15) as http:
            chat = await chat_of(http, auth, tenant)
            other = await another_chat(http, chat)
            async with (  # the visitors' every slot, with nothing but the public key
                subscribe(http, f"{chat.url}/events", headers=chat.session),
                subscribe(http, f"{other.url}/events", headers=other.session),
            ):
                async with (  # and still the whole team connects
                    subscribe(http, "/v1/events", headers=auth(tenant.member)),
                    subscribe(http, "/v1/events", headers=auth(tenant.admin)),
                ):
                    full = await refused(http, f"{other.url}/events", headers=other.session)
                    assert full.status_code == 429
                    assert "of visitors per company" in full.text
                    team = await refused(http, "/v1/events", headers=auth(tenant.owner))
                    assert team.status_code == 429  # the team's own limit holds
                    assert "at most 2 open event streams per company" in team.text
                # Another company's visitors count against their own company only.
                theirs = await chat_of(http, auth, tenant_b)
                async with subscribe(http, f"{theirs.url}/events", headers=theirs.session):
                    pass
