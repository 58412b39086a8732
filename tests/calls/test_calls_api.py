"""Call recordings and call history through the API."""

from __future__ import annotations

import uuid

import httpx

from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


async def test_recording_and_call_life_cycle(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
) -> None:
    headers = auth(tenant.member)
    agent_id = str(tenant.rows["agent_configs"])
    recording = await client.post(
        "/v1/calls/recordings", headers=headers,
        json={"recording_url": "https://cdn.example.com/r/1.wav", "agent_id": agent_id,
              "started_at": "2026-11-01T10:00:00Z", "ended_at": "2026-11-01T10:05:00Z"},
    )  # fmt: skip
    assert recording.status_code == 201, recording.text
    backwards = await client.post(
        "/v1/calls/recordings", headers=headers,
        json={"recording_url": "https://cdn.example.com/r/2.wav",
              "started_at": "2026-11-01T10:00:00Z", "ended_at": "2026-11-01T09:00:00Z"},
    )  # fmt: skip
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "ended_at"

    call = await client.post(
        "/v1/calls/history", headers=headers,
        json={"direction": "outbound", "status": "in-progress", "agent_id": agent_id,
              "recording_id": recording.json()["id"], "to_number": "+1 555 0100"},
    )  # fmt: skip
    assert call.status_code == 201, call.text
    done = await client.patch(
        f"/v1/calls/history/{call.json()['id']}", headers=headers,
        json={"status": "completed", "duration_seconds": 300},
    )  # fmt: skip
    assert done.json()["status"] == "completed"
    listed = await client.get(
        "/v1/calls/history", headers=headers, params={"status": "completed", "agent_id": agent_id}
    )
    assert call.json()["id"] in [c["id"] for c in listed.json()["data"]]


async def test_a_time_no_store_can_read_back_is_refused_and_nothing_changes(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    """9999-12-31T23:59:59-23:59 is year 10000 in UTC: PostgreSQL would store it, but no
    response could be made of the row (a change that commits in one round trip would be
    kept behind a 422). It is refused as the field it is."""
    headers = auth(tenant.member)
    made = await client.post("/v1/calls/recordings", headers=headers,
                             json={"recording_url": "https://cdn.example.com/r/3.wav",
                                   "started_at": "2026-11-01T10:00:00Z"})  # fmt: skip
    assert made.status_code == 201, made.text
    beyond = "9999-12-31T23:59:59.999999-23:59"
    for method, path in (("POST", "/v1/calls/recordings"),
                         ("PATCH", f"/v1/calls/recordings/{made.json()['id']}"),
                         ("POST", "/v1/calls/history"),
                         ("PATCH", f"/v1/calls/history/{uuid.uuid4()}")):  # fmt: skip
        body = {"recording_url": "https://cdn.example.com/r/4.wav", "direction": "inbound",
                "started_at": beyond}  # fmt: skip
        refused = await client.request(method, path, headers=headers, json=body)
        assert refused.status_code == 422, (method, path, refused.text)
        assert refused.json()["errors"][0]["field"] == "started_at"
    again = await client.get(f"/v1/calls/recordings/{made.json()['id']}", headers=headers)
    assert again.json()["started_at"] == "2026-11-01T10:00:00Z"
