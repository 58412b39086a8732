"""Nothing is stored that cannot be read back.

A request with more than one Content-Type header is refused (400) before anything reads
its body: the JSON guard and FastAPI's body parser would each believe a different one,
and a JSON body the guard took for text reached the stores unchecked. Below the guard,
every JSON value written to PostgreSQL (jsonb) or MongoDB is held to the guard's bounds
before commit: a write that would be unreadable is refused naming the field, and every
list of the table answers as before.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from syntera.api.json_guard import JsonGuard
from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import AuthHeaders
from tests.conftest import TEST_SERVICE_KEY
from tests.factories import SeededCompany

PASSWORD = "correct horse battery"
TWO_TYPES = [("Content-Type", "application/json"), ("Content-Type", "text/plain")]
SERVICE = {"Authorization": f"Bearer {TEST_SERVICE_KEY}", "apikey": TEST_SERVICE_KEY}


def nested(depth: int) -> Any:
    inner: Any = 1
    for _ in range(depth):
        inner = {"a": inner}
    return inner


DEEP = nested(300)
SURROGATE = {"k": "\ud800"}


@dataclass(frozen=True)
class Attack:
    """A write of an unreadable value: where it goes, and the list that must still
    answer after it."""

    name: str
    method: str
    path: str
    body: Any
    field: str
    lists: tuple[str, ...]


ATTACKS = [
    Attack("contact metadata", "POST", "/v1/contacts", {"metadata": DEEP}, "metadata",
           ("/v1/contacts", "/v1/contacts?limit=5")),
    Attack("contact metadata change", "PATCH", "/v1/contacts/{contact}", {"metadata": DEEP},
           "metadata", ("/v1/contacts", "/v1/contacts/{contact}")),
    Attack("deal metadata", "POST", "/v1/deals", {"title": "D", "metadata": DEEP}, "metadata",
           ("/v1/deals",)),
    Attack("agent voice_settings", "POST", "/v1/agents",
           {"name": "A", "system_prompt": "Be nice", "voice_settings": DEEP}, "voice_settings",
           ("/v1/agents",)),
    Attack("analytics event", "POST", "/v1/analytics/events",
           {"event_type": "message.sent", "properties": DEEP}, "properties",
           ("/v1/analytics/events",)),
    Attack("conversation metadata", "POST", "/v1/conversations",
           {"channel": "chat", "agent_id": "{agent}", "metadata": SURROGATE}, "metadata.k",
           ("/v1/conversations",)),
    Attack("conversation metadata change", "PATCH", "/v1/conversations/{conversation}",
           {"metadata": SURROGATE}, "metadata.k", ("/v1/conversations/{conversation}",)),
    Attack("message metadata.intent", "POST", "/v1/conversations/{conversation}/messages",
           {"sender_type": "user", "role": "user", "content": "hi",
            "metadata": {"intent": SURROGATE}}, "metadata.intent.k",
           ("/v1/conversations/{conversation}/messages",)),
    Attack("webhook payload", "POST", "/v1/hooks/{workflow}", DEEP, "payload",
           ("/v1/workflows/{workflow}/executions",)),
    Attack("user data", "PUT", "/auth/v1/user", {"data": DEEP}, "data", ()),
    Attack("one-time password data", "POST", "/auth/v1/otp",
           {"email": "{new_email}", "data": DEEP}, "data", ()),
]  # fmt: skip


@dataclass
class Target:
    """A company with a conversation and a webhook workflow, and a signed-up user."""

    tenant: SeededCompany
    headers: dict[str, str]
    places: dict[str, str]
    email: str
    user_headers: dict[str, str]
    new_email: str = field(default_factory=lambda: f"otp-{uuid.uuid4().hex[:12]}@example.com")

    def fill(self, text: str) -> str:
        for name, value in self.places.items():
            text = text.replace("{" + name + "}", value)
        return text.replace("{new_email}", self.new_email)

    def request(self, attack: Attack) -> tuple[str, dict[str, str], bytes]:
        """The attack's URL, its headers (without a Content-Type) and its body."""
        headers = self.headers
        if attack.path.startswith("/v1/hooks/"):
            headers = {"X-Webhook-Secret": self.places["secret"]}
        elif attack.path == "/auth/v1/user":
            headers = self.user_headers
        elif attack.path.startswith("/auth/"):
            headers = {"apikey": "anon"}
        body = json.loads(self.fill(json.dumps(attack.body)))
        return self.fill(attack.path), headers, json.dumps(body).encode()


async def target_of(client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany) -> Target:
    headers = auth(tenant.member)
    manager = auth(tenant.owner)
    conversation = await client.post(
        "/v1/conversations", headers=headers,
        json={"agent_id": str(tenant.rows["agent_configs"]), "channel": "chat"},
    )  # fmt: skip
    assert conversation.status_code == 201, conversation.text
    workflow = await client.post(
        "/v1/workflows", headers=manager,
        json={"name": "Hook", "trigger_type": "webhook",
              "nodes": [{"id": "start", "type": "trigger", "config": {}}], "edges": []},
    )  # fmt: skip
    assert workflow.status_code == 201, workflow.text
    workflow_id = workflow.json()["id"]
    secret = await client.post(f"/v1/workflows/{workflow_id}/secret", headers=manager)
    email = f"unreadable-{uuid.uuid4().hex[:12]}@example.com"
    signed_up = await client.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})
    assert signed_up.status_code == 200, signed_up.text
    user_headers = {"Authorization": f"Bearer {signed_up.json()['access_token']}"}
    places = {
        "agent": str(tenant.rows["agent_configs"]),
        "contact": str(tenant.rows["contacts"]),
        "conversation": conversation.json()["id"],
        "workflow": workflow_id,
        "secret": secret.json()["secret"],
    }
    return Target(tenant, headers, places, email, user_headers)


async def assert_nothing_unreadable(
    client: httpx.AsyncClient,
    target: Target,
    attack: Attack,
    owner_conn: psycopg.Connection,
) -> None:
    """Every list the attack could have broken answers, and nothing was queued or made."""
    for path in attack.lists:
        listed = await client.get(target.fill(path), headers=target.headers)
        assert listed.status_code == 200, (attack.name, path, listed.text)
    if attack.path.startswith("/v1/hooks/"):
        queued = owner_conn.execute(
            "SELECT count(*) FROM public.workflow_events WHERE workflow_id = %s",
            (target.places["workflow"],),
        ).fetchone()
        assert queued == (0,)
    if attack.path.startswith("/auth/"):
        signed_in = await client.post(
            "/auth/v1/token?grant_type=password",
            json={"email": target.email, "password": PASSWORD},
        )
        assert signed_in.status_code == 200, signed_in.text
        users = await client.get("/auth/v1/admin/users?per_page=1000", headers=SERVICE)
        assert users.status_code == 200, users.text
        made = owner_conn.execute(
            "SELECT count(*) FROM auth.users WHERE lower(email) IN (%s, %s)"
            " AND raw_user_meta_data ? 'a'",
            (target.email, target.new_email),
        ).fetchone()
        assert made == (0,)


@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.name for attack in ATTACKS])
async def test_two_content_types_are_refused_before_the_body_is_read(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    attack: Attack,
) -> None:
    target = await target_of(client, auth, tenant)
    url, headers, body = target.request(attack)
    answer = await client.request(
        attack.method, url, headers=[*headers.items(), *TWO_TYPES], content=body
    )
    assert answer.status_code == 400, (attack.name, answer.status_code, answer.text)
    if url.startswith("/auth/"):  # GoTrue's shape, as every error of /auth/v1
        assert answer.json()["error_code"] == "validation_failed"
        assert "Content-Type" in answer.json()["msg"]
    else:
        assert answer.headers["content-type"] == "application/problem+json"
        assert "Content-Type" in answer.json()["detail"]
    await assert_nothing_unreadable(client, target, attack, owner_conn)


@pytest.mark.parametrize(
    "types",
    [
        [("Content-Type", "text/plain"), ("Content-Type", "application/json")],
        [("Content-Type", "application/json"), ("content-type", "application/json")],
    ],
)
async def test_any_second_content_type_is_refused(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, types: list[Any]
) -> None:
    headers = [*auth(tenant.member).items(), *types]
    answer = await client.post("/v1/contacts", headers=headers, content=b'{"first_name": "A"}')
    assert answer.status_code == 400, answer.text
    one = await client.post("/v1/contacts", headers=[*headers[:-1]], content=b"{}")
    assert one.status_code in (201, 422), one.text  # a single one is read as before


@pytest.fixture(scope="module")
async def unguarded(settings: Settings, api_urls: StackUrls) -> AsyncIterator[httpx.AsyncClient]:
    """The API without its JSON guard: what reaches the services and stores when a
    body gets past the edge, however it does."""
    app = create_app(settings.model_copy(update={"rate_limits_enabled": False}), api_urls)
    app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not JsonGuard]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.name for attack in ATTACKS])
async def test_a_write_that_could_not_be_read_back_is_refused_naming_the_field(
    unguarded: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    attack: Attack,
) -> None:
    target = await target_of(unguarded, auth, tenant)
    url, headers, body = target.request(attack)
    headers = {**headers, "Content-Type": "application/json"}
    answer = await unguarded.request(attack.method, url, headers=headers, content=body)
    if url.startswith("/auth/"):  # GoTrue answers a field it refuses with 400
        assert answer.status_code == 400, (attack.name, answer.text)
        assert answer.json()["error_code"] == "validation_failed"
        assert answer.json()["msg"].startswith(attack.field), answer.text
    else:
        assert answer.status_code == 422, (attack.name, answer.status_code, answer.text)
        [error] = answer.json()["errors"]
        assert error["field"].startswith(attack.field), error
    await assert_nothing_unreadable(unguarded, target, attack, owner_conn)
