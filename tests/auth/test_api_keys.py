"""Supabase's API keys: ``syntera auth keys`` prints an anon key and a service-role key
(JWTs of the HS256 secret, as a Supabase project's), and the API reads the ``apikey``
header as Supabase's gateway does — the key alone acts as its role, a user's bearer token
sent beside it wins."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import jwt

from syntera.auth.tokens import api_key, load_keys
from syntera.config import Settings
from tests.api_fixtures import AuthHeaders
from tests.conftest import TEST_JWT_SECRET, StackDatabase
from tests.events_helpers import refused, subscribe
from tests.factories import SeededCompany


def test_auth_keys_prints_an_anon_and_a_service_role_key_the_same_every_time(
    database: StackDatabase, settings: Settings
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(SYNTERA_DATABASE_URL=database.owner_url, SYNTERA_JWT_SECRET=TEST_JWT_SECRET,
               COLUMNS="80")  # fmt: skip
    runs = [
        subprocess.run(
            [sys.executable, "-m", "syntera", "auth", "keys"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for _ in range(2)
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    printed = dict(
        line.split("=", 1) for line in runs[0].stdout.splitlines() if line.startswith("SUPABASE_")
    )
    assert set(printed) == {"SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY"}
    anon = jwt.decode(printed["SUPABASE_ANON_KEY"], TEST_JWT_SECRET, algorithms=["HS256"])
    service = jwt.decode(
        printed["SUPABASE_SERVICE_ROLE_KEY"], TEST_JWT_SECRET, algorithms=["HS256"]
    )
    assert (anon["role"], service["role"]) == ("anon", "service_role")
    assert anon["iss"] == service["iss"] == "supabase"
    assert anon["exp"] > anon["iat"] + 5 * 365 * 86400  # long-lived, as Supabase's
    assert printed["SUPABASE_ANON_KEY"] == api_key(load_keys(settings), "anon")


async def test_service_role_key_in_apikey_alone_acts_as_the_service(
    client: httpx.AsyncClient, settings: Settings, tenant_a: SeededCompany
) -> None:
    key = api_key(load_keys(settings), "service_role")
    headers = {"apikey": key, "X-Company-Id": str(tenant_a.company_id)}
    response = await client.get("/v1/contacts", headers=headers)
    assert response.status_code == 200, response.text
    assert [c["id"] for c in response.json()["data"]] == [str(tenant_a.rows["contacts"])]
    as_bearer = {"Authorization": f"Bearer {key}", "X-Company-Id": str(tenant_a.company_id)}
    assert (await client.get("/v1/contacts", headers=as_bearer)).json() == response.json()


async def test_anon_key_alone_is_anonymous_and_a_user_token_beside_it_wins(
    client: httpx.AsyncClient, settings: Settings, auth: AuthHeaders, tenant_a: SeededCompany
) -> None:
    anon = api_key(load_keys(settings), "anon")
    alone = await client.get("/v1/contacts", headers={"apikey": anon})
    assert alone.status_code == 401
    assert "anonymous" in alone.text
    member = {"apikey": anon, **auth(tenant_a.member)}
    response = await client.get("/v1/contacts", headers=member)
    assert response.status_code == 200, response.text
    assert [c["id"] for c in response.json()["data"]] == [str(tenant_a.rows["contacts"])]


async def test_a_bad_bearer_is_refused_even_beside_a_good_apikey(
    client: httpx.AsyncClient, settings: Settings, tenant_a: SeededCompany
) -> None:
    key = api_key(load_keys(settings), "service_role")
    headers = {"apikey": key, "Authorization": "Bearer not.a.jwt",
               "X-Company-Id": str(tenant_a.company_id)}  # fmt: skip
    assert (await client.get("/v1/contacts", headers=headers)).status_code == 401


async def test_an_apikey_of_another_secret_is_refused(
    client: httpx.AsyncClient, tenant_a: SeededCompany
) -> None:
    claims = {"role": "service_role", "iss": "supabase", "exp": 2_051_222_400}
    forged = jwt.encode(claims, "another secret of at least thirty-two bytes", algorithm="HS256")
    headers = {"apikey": forged, "X-Company-Id": str(tenant_a.company_id)}
    assert (await client.get("/v1/contacts", headers=headers)).status_code == 401


async def test_a_user_token_in_the_stream_s_query_wins_over_the_anon_key_beside_it(
    http: httpx.AsyncClient, settings: Settings, auth: AuthHeaders, tenant_a: SeededCompany
) -> None:
    # supabase-js sends the anon key as apikey on every request, the stream's own
    # EventSource-style credential included.
    anon = api_key(load_keys(settings), "anon")
    token = auth(tenant_a.member)["Authorization"].removeprefix("Bearer ")
    async with subscribe(http, "/v1/events", headers={"apikey": anon},
                         params={"access_token": token}):  # fmt: skip
        pass
    alone = await refused(http, "/v1/events", headers={"apikey": anon})
    assert alone.status_code == 401


async def test_another_scheme_names_no_token_and_the_apikey_beside_it_does_not_act(
    client: httpx.AsyncClient, settings: Settings, tenant_a: SeededCompany
) -> None:
    """The credential rule is one (``credential_from``), on FastAPI's routes and the fast
    paths alike: an ``Authorization`` header that is not a bearer (``Basic``) names no
    token, and the ``apikey`` beside it does not act either: a backend that holds the
    service key and forwards its caller's header must not run ``Basic x`` as the service
    role."""
    key = api_key(load_keys(settings), "service_role")
    headers = {"apikey": key, "Authorization": "Basic dXNlcjpwYXNz",
               "X-Company-Id": str(tenant_a.company_id)}  # fmt: skip
    for path in ("/v1/contacts", f"/v1/contacts/{tenant_a.rows['contacts']}"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)
    alone = {"apikey": key, "X-Company-Id": str(tenant_a.company_id)}
    assert (await client.get("/v1/contacts", headers=alone)).status_code == 200
    response = await client.get("/v1/contacts", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
