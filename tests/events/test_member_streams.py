"""GET /v1/events: what a member receives, in what form, and what they never receive."""

from __future__ import annotations

import httpx

from tests.api_fixtures import AuthHeaders
from tests.events_helpers import refused, subscribe
from tests.factories import SeededCompany


async def start(http: httpx.AsyncClient, headers: dict[str, str], agent_id: object) -> dict:
    response = await http.post(
        "/v1/conversations", headers=headers, json={"agent_id": str(agent_id)}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_member_receives_each_change_as_the_rest_api_returns_it(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    async with subscribe(http, "/v1/events", headers=member) as stream:
        conversation = await start(http, member, tenant.rows["agent_configs"])
        url = f"/v1/conversations/{conversation['id']}"
        posted = await http.post(
            f"{url}/messages", headers=member, json={"sender_type": "user", "content": "hi"}
        )
        assert posted.status_code == 201, posted.text
        message = posted.json()
        reacted = await http.post(
            f"{url}/messages/{message['id']}/reactions", headers=member, json={"emoji": "👍"}
        )
        read = await http.post(f"{url}/messages/{message['id']}/read", headers=member)
        updated = await http.patch(url, headers=member, json={"tags": ["vip"]})
        ended = await http.post(f"{url}/end", headers=member)
        archived = await http.post(f"{url}/archive", headers=member)
        received = await stream.events(7)
    assert [event.event for event in received] == [
        "conversation.started", "message.created", "message.reaction", "message.read",
        "conversation.updated", "conversation.ended", "conversation.archived",
    ]  # fmt: skip
    answers = [conversation, message, reacted.json(), read.json(), updated.json(),
               ended.json(), archived.json()]  # fmt: skip
    for event, answer in zip(received, answers, strict=True):
        assert event.data["data"] == answer
        assert event.data["type"] == event.event
        assert event.data["company_id"] == str(tenant.company_id)
        assert event.data["conversation_id"] == conversation["id"]
        assert event.data["at"]
    ids = [event.id for event in received]
    assert all(ids)
    assert ids == sorted(ids, key=lambda i: tuple(map(int, str(i).split("-"))))
    assert stream.retry == 3000


async def test_stream_sends_heartbeats(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    async with subscribe(http, "/v1/events", headers=auth(tenant.member)) as stream:
        await stream.nothing_within(2.5)
    assert "heartbeat" in stream.comments


async def test_filters_narrow_to_one_conversation_and_some_types(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    agent = tenant.rows["agent_configs"]
    watched = await start(http, member, agent)
    other = await start(http, member, agent)
    params = {"conversation_id": watched["id"], "types": "message.created,conversation.ended"}
    async with subscribe(http, "/v1/events", headers=member, params=params) as stream:
        for conversation in (other, watched):
            body = {"sender_type": "agent", "content": f"to {conversation['id']}"}
            response = await http.post(
                f"/v1/conversations/{conversation['id']}/messages", headers=member, json=body
            )
            assert response.status_code == 201
            await http.patch(
                f"/v1/conversations/{conversation['id']}", headers=member, json={"tags": ["x"]}
            )
            await http.post(f"/v1/conversations/{conversation['id']}/end", headers=member)
        first, second = await stream.events(2)
        await stream.nothing_within(0.5)
    assert (first.event, first.data["data"]["content"]) == (
        "message.created",
        f"to {watched['id']}",
    )
    assert first.data["data"]["role"] == "assistant"  # derived from sender_type
    assert (second.event, second.data["conversation_id"]) == ("conversation.ended", watched["id"])


async def test_bad_filters_and_positions_are_422_naming_them(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    for params, named in (
        ({"types": "message.created,message.deleted"}, "message.deleted"),
        ({"types": ","}, "types"),
        ({"last_event_id": "yesterday"}, "last_event_id"),
    ):
        response = await refused(http, "/v1/events", headers=member, params=params)
        assert response.status_code == 422, response.text
        assert named in response.text
    header = await refused(http, "/v1/events", headers={**member, "Last-Event-ID": "12-x"})
    assert header.status_code == 422
    assert "Last-Event-ID" in header.text


async def test_another_companys_conversation_is_404_like_a_missing_one(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany
) -> None:
    theirs = await start(http, auth(tenant_b.member), tenant_b.rows["agent_configs"])
    for conversation_id in (theirs["id"], "0" * 24, "not-an-id"):
        response = await refused(
            http, "/v1/events", headers=auth(tenant.member),
            params={"conversation_id": conversation_id},
        )  # fmt: skip
        assert response.status_code == 404, response.text


async def test_no_credential_is_401_and_the_service_key_needs_a_company(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    assert (await refused(http, "/v1/events")).status_code == 401
    bad = await refused(http, "/v1/events", params={"access_token": "not-a-token"})
    assert bad.status_code == 401
    service = auth(tenant.member.service())
    assert (await refused(http, "/v1/events", headers=service)).status_code == 403
    async with subscribe(
        http, "/v1/events", headers={**service, "X-Company-Id": str(tenant.company_id)}
    ) as stream:
        await start(http, auth(tenant.member), tenant.rows["agent_configs"])
        event = await stream.next()
    assert event.event == "conversation.started"


async def test_threads_opened_or_renamed_update_the_conversation(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    conversation = await start(http, member, tenant.rows["agent_configs"])
    url = f"/v1/conversations/{conversation['id']}/threads"
    async with subscribe(http, "/v1/events", headers=member) as stream:
        thread = (await http.post(url, headers=member, json={"title": "Billing"})).json()
        await http.patch(f"{url}/{thread['id']}", headers=member, json={"title": "Refund"})
        opened, renamed = await stream.events(2)
    assert opened.event == renamed.event == "conversation.updated"
    assert [t["title"] for t in opened.data["data"]["threads"]] == ["Billing"]
    assert [t["title"] for t in renamed.data["data"]["threads"]] == ["Refund"]
