"""Hostile JSON against every operation of the OpenAPI document.

Schemathesis generates inputs from the schemas, and a schema that says "any object"
never makes it try an object nested 300 levels deep, a 400-digit integer, a lone
surrogate or the last instant of the year 9999 at -23:59. The strategy below does: each
operation that takes a JSON body or query parameters gets, in every top-level field (on
an otherwise valid body) and in the body as a whole, values of those classes. No answer
may be a 5xx, and an answer of 4xx must leave every store as it was.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pymongo
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from psycopg import sql

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api.test_isolation import ROW_ROUTES
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

pytestmark = pytest.mark.slow


def nested(depth: int, inner: Any = 1, as_list: bool = False) -> Any:
    """``depth`` levels of objects (or lists) around ``inner``."""
    for _ in range(depth):
        inner = [inner] if as_list else {"a": inner}
    return inner


EXTREME_DATES = [
    "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00.000001+14:00",
]

# Values of the classes that broke the server: deep nesting, numbers beyond 64 bits and
# floats, lone surrogates, NUL, extreme instants, very long strings, Mongo-looking keys.
hostile_json = st.one_of(
    # Just past the bound, where serialisers gave up (~255 to 300), and far beyond.
    st.sampled_from([33, 300, 900]).map(nested),
    st.sampled_from([33, 300, 900]).map(lambda depth: nested(depth, as_list=True)),
    st.sampled_from([10**400, 2**64, 2**63, -(2**63) - 1, -(10**40)]),
    st.sampled_from(["\ud800", "text\udfff", "\udc00\ud800", {"key\ud800": 1}]),
    st.sampled_from(["nul\x00byte", {"nul\x00key": 1}, ["\x00"]]),
    st.sampled_from(EXTREME_DATES),
    st.sampled_from([{"$where": "1"}, {"a.b": 1}, {"$gt": ""}, {"ok": {"$ne": None}}]),
    st.integers(min_value=200_001, max_value=260_000).map(lambda n: "x" * n),
    st.sampled_from([{"when": nested(60)}, {"all": [nested(40)]}, {"value": 10**400}]),
)


def cursor_of(at: str) -> str:
    raw = json.dumps([at, "0123456789abcdef01234567"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Raw query text (already URL-encoded): invalid UTF-8, NUL, extreme instants, cursors
# hiding extreme instants, long values.
hostile_query = st.one_of(
    st.sampled_from(["%ED%A0%80", "%FF%FE", "%00", "a%00b"]),
    st.sampled_from([quote(date) for date in EXTREME_DATES]),
    st.sampled_from([cursor_of(date) for date in EXTREME_DATES]),
    st.integers(min_value=10_001, max_value=20_000).map(lambda n: "y" * n),
    st.sampled_from(["99999999999999999999999999", "-1e400", "NaN"]),
)

# Valid bodies, so that the hostile field is the only thing wrong with a request.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/auth/v1/signup"): {"email": "fuzz@example.com", "password": "long enough pw"},
    ("POST", "/v1/contacts"): {"email": "fuzz@example.com"},
    ("POST", "/v1/deals"): {"title": "Fuzz"},
    ("POST", "/v1/agents"): {"name": "Fuzz", "system_prompt": "Be nice"},
    ("POST", "/v1/conversations"): {"channel": "chat"},
    ("POST", "/v1/conversations/{conversation_id}/messages"): {
        "sender_type": "user", "role": "user", "content": "hello",
    },
    ("POST", "/v1/conversations/{conversation_id}/threads"): {"title": "T"},
    ("POST", "/v1/workflows"): {
        "name": "W", "trigger_type": "contact_created",
        "nodes": [{"id": "start", "type": "trigger", "config": {}}], "edges": [],
    },
    ("POST", "/v1/analytics/events"): {"event_type": "message.sent"},
    ("POST", "/v1/calls/history"): {"direction": "inbound"},
    ("POST", "/v1/calls/recordings"): {"recording_url": "https://example.com/r.wav"},
    ("POST", "/v1/kb/search"): {"query": "refunds"},
}  # fmt: skip

# Fields that take any JSON: where deep nesting and odd numbers reach the stores.
FREE_FORM = {
    "metadata", "voice_settings", "properties", "data", "trigger_data", "trigger_config",
    "nodes", "edges", "attachments", "(any)",
}  # fmt: skip

# Ending the company would end the fuzzing tenant; uploads are multipart, not JSON.
EXCLUDED = {
    ("DELETE", "/v1/companies/current"),
    ("POST", "/v1/kb/documents"),
    # Event streams do not end by themselves; their hostile inputs are in tests/events.
    ("GET", "/v1/events"),
    ("GET", "/v1/public/conversations/{conversation_id}/events"),
}


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def operations(app: FastAPI) -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path, top-level body fields or [] for none, query parameters) of every
    operation that takes JSON or query parameters."""
    document = app.openapi()
    found = []
    for path, entries in document["paths"].items():
        for method, operation in entries.items():
            if (method.upper(), path) in EXCLUDED:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            fields: list[str] = []
            if "application/json" in content:
                schema = resolve(content["application/json"]["schema"], document)
                options = schema.get("anyOf", [schema])
                for option in options:
                    fields += list(resolve(option, document).get("properties", {}))
                fields = sorted(set(fields)) or ["(any)"]
            query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            if fields or query:
                found.append((method.upper(), path, fields, query))
    return found


def operation_ids() -> list[tuple[str, str, list[str], list[str]]]:
    stack = StackUrls("postgresql://-", "postgresql://-", "mongodb://-", "redis://-")
    return operations(create_app(Settings(jwt_secret="x" * 40), stack))


OPERATIONS = operation_ids()


@pytest.fixture(scope="module")
async def fuzz_client(settings: Settings, api_urls: StackUrls) -> AsyncIterator[httpx.AsyncClient]:
    """The API without rate limits (the fuzzer is one busy user), answering 500 rather
    than raising, so that a server error is a failed assertion with its request."""
    app = create_app(settings.model_copy(update={"rate_limits_enabled": False}), api_urls)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


@pytest.fixture(scope="module")
async def targets(
    fuzz_client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany
) -> dict[str, str]:
    """Real ids for every path parameter, so that requests reach their handlers."""
    headers = auth(tenant_a.owner)
    started = await fuzz_client.post(
        "/v1/conversations",
        headers=headers,
        json={"agent_id": str(tenant_a.rows["agent_configs"]), "channel": "chat"},
    )
    conversation = started.json()["id"]
    message = await fuzz_client.post(
        f"/v1/conversations/{conversation}/messages",
        headers=headers,
        json={"sender_type": "user", "role": "user", "content": "hi"},
    )
    thread = await fuzz_client.post(
        f"/v1/conversations/{conversation}/threads", headers=headers, json={"title": "T"}
    )
    return {
        "conversation_id": conversation,
        "message_id": message.json()["id"],
        "thread_id": thread.json()["id"],
        "workflow_id": str(tenant_a.rows["workflows"]),
    }


def concrete(path: str, tenant: SeededCompany, targets: dict[str, str]) -> str:
    for prefix, (table, _) in ROW_ROUTES.items():
        if path.startswith(prefix + "/{row_id}"):
            row = tenant.member.user_id if table == "users" else tenant.rows[table]
            path = path.replace("{row_id}", str(row))
    for name, value in targets.items():
        path = path.replace("{" + name + "}", value)
    return path


TENANT_TABLES = [
    "agent_configs", "contacts", "deals", "knowledge_base_documents", "workflows",
    "workflow_executions", "workflow_events", "call_recordings", "call_history",
    "analytics_events", "notifications", "invitations", "users",
]  # fmt: skip


def _snapshot_query() -> sql.Composed:
    counts = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT {name}, count(*), max(xmin::text::bigint) FROM {table} WHERE company_id = %(c)s"
        ).format(name=sql.Literal(table), table=sql.Identifier("public", table))
        for table in TENANT_TABLES
    )
    return sql.SQL(
        "SELECT (SELECT array_agg(row(t.*)::text) FROM ({counts}) t),"
        " (SELECT xmin::text FROM public.companies WHERE id = %(c)s),"
        " (SELECT count(*) FROM auth.users)"
    ).format(counts=counts)


SNAPSHOT = _snapshot_query()


@pytest.fixture(scope="module")
def mongo(stack: StackUrls, settings: Settings) -> Iterator[Any]:
    with pymongo.MongoClient(stack.mongodb_uri) as client:
        yield client[settings.mongodb_db]


def snapshot(owner_conn: psycopg.Connection, mongo: Any, tenant: SeededCompany) -> Any:
    """What a change would show: per table of the company, its rows and their newest
    change (``xmin``); the company itself; the accounts; its MongoDB documents."""
    rows = owner_conn.execute(SNAPSHOT, {"c": tenant.company_id}).fetchone()
    documents = [
        list(
            mongo[collection].aggregate([
                {"$match": {"company_id": str(tenant.company_id)}},
                {"$group": {"_id": None, "n": {"$sum": 1}, "at": {"$max": "$updated_at"},
                            "created": {"$max": "$created_at"}}},
            ])
        )
        for collection in ("conversations", "messages")
    ]  # fmt: skip
    return rows, documents


@pytest.mark.unscoped_mongo("counts the whole sign-up table and the tenant's documents")
@pytest.mark.parametrize(
    ("method", "path", "fields", "query"),
    OPERATIONS,
    ids=[f"{method} {path}" for method, path, _, _ in OPERATIONS],
)
@examples(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=hostile_json, text=hostile_query, data=st.data())
async def test_no_hostile_input_is_a_server_error_or_a_change(
    fuzz_client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant_a: SeededCompany,
    targets: dict[str, str],
    owner_conn: psycopg.Connection,
    mongo: Any,
    method: str,
    path: str,
    fields: list[str],
    query: list[str],
    value: Any,
    text: str,
    data: st.DataObject,
) -> None:
    url = concrete(path, tenant_a, targets)
    headers = {} if path.startswith("/auth/") else auth(tenant_a.owner)
    if path.startswith("/v1/public/"):
        headers = {"X-Api-Key": "pub_key_unknown"}
    content: bytes | None = None
    places = [*fields, *(f"?{name}" for name in query)]
    free = [field for field in fields if field in FREE_FORM]
    if free and data.draw(st.booleans(), label="free-form field"):
        places = free
    place = data.draw(st.sampled_from(places), label="where")
    if place.startswith("?"):
        url = f"{url}?{place[1:]}={text}"
    elif fields:
        base = dict(VALID_BODIES.get((method, path), {}))
        body = value if place == "(any)" else {**base, place: value}
        content = json.dumps(body).encode()
        headers = {**headers, "Content-Type": "application/json"}
    before = snapshot(owner_conn, mongo, tenant_a)
    response = await fuzz_client.request(method, url, headers=headers, content=content)
    assert response.status_code < 500, (method, url, (content or b"")[:300], response.text)
    if 400 <= response.status_code < 500:
        after = snapshot(owner_conn, mongo, tenant_a)
        assert after == before, (method, url, (content or b"")[:300], response.status_code)
