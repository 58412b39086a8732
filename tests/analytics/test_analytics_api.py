"""Analytics events: recorded as the caller, listed with filters, never changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


async def test_events_are_recorded_as_the_caller_and_filtered(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
) -> None:
    headers = auth(tenant.member)
    recorded = await client.post(
        "/v1/analytics/events", headers=headers,
        json={"event_type": "widget.opened", "properties": {"page": "/pricing"}},
    )  # fmt: skip
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["user_id"] == str(tenant.member.user_id)
    spoofed = await client.post(
        "/v1/analytics/events", headers=headers,
        json={"event_type": "widget.opened", "user_id": str(tenant.owner.user_id)},
    )  # fmt: skip
    assert spoofed.status_code == 422  # user_id is not an input

    typed = await client.get(
        "/v1/analytics/events", headers=headers, params={"event_type": "widget.opened"}
    )
    assert [e["id"] for e in typed.json()["data"]] == [recorded.json()["id"]]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (
        await client.get("/v1/analytics/events", headers=headers, params={"since": later})
    ).json()["data"] == []
    url = f"/v1/analytics/events/{recorded.json()['id']}"
    assert (await client.delete(url, headers=headers)).status_code == 405
