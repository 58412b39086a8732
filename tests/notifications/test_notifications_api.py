"""Notifications: sent by the service key, read and dismissed by their recipient only."""

from __future__ import annotations

import httpx

from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany


async def test_service_notifies_a_member_who_alone_reads_and_dismisses_it(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    make_tenant: MakeTenant,
) -> None:
    other = await make_tenant()
    service = {**auth(Principal.service()), "X-Company-Id": str(tenant.company_id)}
    member, teammate = auth(tenant.member), auth(tenant.admin)

    by_user = await client.post(
        "/v1/notifications", headers=member,
        json={"user_id": str(tenant.member.user_id), "type": "deal", "title": "Hi"},
    )  # fmt: skip
    assert by_user.status_code == 403
    to_stranger = await client.post(
        "/v1/notifications", headers=service,
        json={"user_id": str(other.member.user_id), "type": "deal", "title": "Hi"},
    )  # fmt: skip
    assert to_stranger.status_code == 422
    assert to_stranger.json()["errors"][0]["field"] == "user_id"

    sent = await client.post(
        "/v1/notifications", headers=service,
        json={"user_id": str(tenant.member.user_id), "type": "deal.won", "title": "Won!"},
    )  # fmt: skip
    assert sent.status_code == 201, sent.text
    url = f"/v1/notifications/{sent.json()['id']}"

    count = (await client.get("/v1/notifications/unread-count", headers=member)).json()
    assert count == {"unread": 2}  # the seeded one and this one
    assert (await client.get(url, headers=teammate)).status_code == 404  # not theirs
    assert (await client.patch(url, headers=teammate, json={"read": True})).status_code == 404

    read = await client.patch(url, headers=member, json={"read": True})
    assert read.json()["read_at"] is not None
    unread = await client.get("/v1/notifications", headers=member, params={"unread": "true"})
    assert [n["id"] for n in unread.json()["data"]] == [str(tenant.rows["notifications"])]
    assert (await client.post("/v1/notifications/read-all", headers=member)).status_code == 204
    assert (await client.get("/v1/notifications/unread-count", headers=member)).json() == {
        "unread": 0
    }
    assert (await client.delete(url, headers=teammate)).status_code == 404
    assert (await client.delete(url, headers=member)).status_code == 204
