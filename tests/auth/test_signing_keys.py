"""ES256 access tokens with ``kid``, the JWKS, and ``syntera auth rotate-key`` /
``retire-key``: tokens of both keys valid across a rotation, the old ones refused once
their key is retired, HS256 tokens of the shared secret accepted throughout. On a
database of its own, so the rotation touches no other test's keys."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from syntera.app import create_app
from syntera.auth import keys as signing_keys
from syntera.config import Settings
from syntera.db.migrations import migrate
from syntera.embedded import StackUrls
from tests.api_fixtures import serving
from tests.auth.conftest import PASSWORD, AuthServer, Outbox, new_email
from tests.auth.test_auth_api import supabase_style_token
from tests.conftest import TEST_JWT_SECRET, StackDatabase, create_database


@pytest.fixture
def keyed(
    settings: Settings, api_urls: StackUrls, stack: StackUrls, tmp_path: Path
) -> Iterator[tuple[AuthServer, StackDatabase]]:
    database = create_database(stack, "keys")
    migrate(database.owner_url)
    urls = dataclasses.replace(
        api_urls, database_url=database.owner_url, api_database_url=database.api_url
    )
    local = settings.model_copy(update={"data_dir": tmp_path, "auth_keys_refresh_s": 0.2,
                                        "rate_limits_enabled": False})  # fmt: skip
    with serving(create_app(local, urls)) as url:
        yield AuthServer(url, Outbox(tmp_path / "mail"), local), database


def auth_cli(database: StackDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(SYNTERA_DATABASE_URL=database.owner_url, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "syntera", "auth", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def user_answer(server: AuthServer, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{server.url}/auth/v1/user", headers=headers).status_code


def wait_for_kid(server: AuthServer, email: str, unlike: str) -> str:
    """A token signed by a key other than ``unlike``, once the server has reloaded."""
    for _ in range(100):
        session = server.client().sign_in_with_password({"email": email, "password": PASSWORD})
        assert session.session is not None
        if kid_of(session.session.access_token) != unlike:
            return session.session.access_token
        time.sleep(0.05)
    raise AssertionError("the new key never signed")


def test_tokens_of_both_keys_verify_across_a_rotation_until_the_old_is_retired(
    keyed: tuple[AuthServer, StackDatabase],
) -> None:
    server, database = keyed
    email = new_email()
    client = server.client()
    first = client.sign_up({"email": email, "password": PASSWORD}).session
    assert first is not None
    old_token = first.access_token
    old_kid = kid_of(old_token)
    jwks = httpx.get(f"{server.url}/auth/v1/.well-known/jwks.json").json()
    assert [key["kid"] for key in jwks["keys"]] == [old_kid]
    assert jwks["keys"][0]["alg"] == "ES256"
    assert "d" not in jwks["keys"][0]  # the public half only
    verified = client.get_claims(old_token)  # checked by the client against the JWKS
    assert verified is not None
    assert verified["claims"]["email"] == email

    refused = auth_cli(database, "retire-key", old_kid)
    assert refused.returncode == 1
    assert "signs the tokens being issued" in refused.stderr

    rotated = auth_cli(database, "rotate-key", "--now")
    assert rotated.returncode == 0, rotated.stderr
    new_token = wait_for_kid(server, email, old_kid)
    new_kid = kid_of(new_token)
    both = httpx.get(f"{server.url}/auth/v1/.well-known/jwks.json").json()["keys"]
    assert {key["kid"] for key in both} == {old_kid, new_kid}
    assert user_answer(server, old_token) == 200
    assert user_answer(server, new_token) == 200
    hs256 = supabase_style_token(TEST_JWT_SECRET, sub=verified["claims"]["sub"])
    assert user_answer(server, hs256) == 200  # the shared secret's tokens still verify
    listing = auth_cli(database, "keys")
    assert old_kid in listing.stdout
    assert new_kid in listing.stdout

    retired = auth_cli(database, "retire-key", old_kid)
    assert retired.returncode == 0, retired.stderr
    for _ in range(100):
        if user_answer(server, old_token) == 401:
            break
        time.sleep(0.05)
    assert user_answer(server, old_token) == 401
    assert user_answer(server, new_token) == 200
    assert user_answer(server, hs256) == 200
    # A token naming the new key's kid but signed by another key is refused.
    _, other_pem, _ = signing_keys.new_key()
    forged = jwt.encode({**verified["claims"], "exp": int(time.time()) + 60}, other_pem,
                        algorithm="ES256", headers={"kid": new_kid})  # fmt: skip
    assert user_answer(server, forged) == 401
