"""``@supabase/supabase-js`` from npm, run by node, unchanged, runs the specification's
data examples (tests/auth/js/rest.mjs) against /rest/v1 over HTTP: as a signed-in member,
with the anon key and with the service-role key."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syntera.app import create_app
from syntera.auth.tokens import api_key, load_keys
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import serving, token_for
from tests.factories import SeededCompany


@pytest.fixture(scope="module")
def rest_server(settings: Settings, api_urls: StackUrls) -> Iterator[str]:
    """The API served over HTTP (node's client cannot call in-process)."""
    unlimited = settings.model_copy(update={"rate_limits_enabled": False})
    with serving(create_app(unlimited, api_urls)) as url:
        yield url


def run_examples(
    supabase_js: Path, url: str, settings: Settings, bearer: str, company_id: str
) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    anon = api_key(load_keys(settings), "anon")
    ran = subprocess.run(
        [node, "rest.mjs", url, anon, bearer, company_id],
        cwd=supabase_js,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result: dict[str, Any] = json.loads(ran.stdout.strip().splitlines()[-1])
    return result


def test_a_signed_in_member_runs_the_examples(
    supabase_js: Path, rest_server: str, settings: Settings, tenant: SeededCompany
) -> None:
    result = run_examples(
        supabase_js, rest_server, settings, token_for(settings, tenant.member),
        str(tenant.company_id),
    )  # fmt: skip
    steps, contact_id = result["steps"], result["contactId"]
    assert {name: step["error"] for name, step in steps.items()} == dict.fromkeys(steps)
    assert [agent["id"] for agent in steps["agents"]["data"]] == [str(tenant.rows["agent_configs"])]
    assert steps["insert"]["data"]["email"] == "js@example.com"
    assert steps["insert"]["status"] == 201
    assert [deal["title"] for deal in steps["page"]["data"]] == ["Js deal 2", "Js deal 1"]
    assert steps["page"]["count"] == 3
    assert steps["embed"]["data"][0] == {
        "title": "Js deal 0",
        "contacts": {"email": "js@example.com"},
    }
    assert steps["upsert"]["data"][0]["email"] == "js-upsert@example.com"
    assert steps["update"]["data"][0]["last_name"] == "Updated"
    assert steps["single"]["data"] == {"id": contact_id, "last_name": "Updated"}
    assert steps["maybeSingle"]["data"] is None
    assert steps["count"]["count"] == 3
    assert steps["rpc"]["data"] == []
    assert len(steps["deleteDeals"]["data"]) == 3
    assert steps["delete"]["data"] == [{"id": contact_id}]


def test_the_anon_key_gets_nothing(
    supabase_js: Path, rest_server: str, settings: Settings, tenant: SeededCompany
) -> None:
    anon = api_key(load_keys(settings), "anon")
    result = run_examples(supabase_js, rest_server, settings, anon, str(tenant.company_id))
    errors = {name: step["error"] for name, step in result["steps"].items() if name != "count"}
    # The anonymous role holds no privilege on the business tables nor the function (a
    # HEAD, the count, has no body to carry the code: its status says it).
    assert set(errors.values()) == {"42501"}, errors
    # 403, not 401: the anon key is a JWT that names a role (PostgREST's `authed`).
    assert {step["status"] for step in result["steps"].values()} == {403}


def test_the_service_role_key_bypasses_row_level_security(
    supabase_js: Path, rest_server: str, settings: Settings, tenant: SeededCompany
) -> None:
    service = api_key(load_keys(settings), "service_role")
    result = run_examples(supabase_js, rest_server, settings, service, str(tenant.company_id))
    steps = result["steps"]
    errors = {name: step["error"] for name, step in steps.items() if step["error"]}
    # Only the RPC is refused: pending_invitations is for signed-in users (no EXECUTE).
    assert errors == {"rpc": "42501"}
    assert [agent["id"] for agent in steps["agents"]["data"]] == [str(tenant.rows["agent_configs"])]
    assert steps["page"]["count"] == 3
    assert steps["single"]["data"]["last_name"] == "Updated"
    assert steps["delete"]["data"] == [{"id": result["contactId"]}]
