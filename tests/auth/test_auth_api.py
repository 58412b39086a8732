"""/auth/v1 against the real Supabase Auth client and by hand: sign-up, sign-in, refresh
rotation, logout, and the answers to wrong passwords, unknown users and bad tokens."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from syntera.app import create_app
from syntera.cli.stack import proxy_options
from syntera.config import Settings
from syntera.db.redis import digest, global_key
from syntera.embedded import StackUrls
from tests.api_fixtures import serving
from tests.conftest import TEST_JWT_SECRET


def new_email() -> str:
    return f"auth-{uuid.uuid4().hex[:12]}@example.com"


PASSWORD = "correct horse battery"


def test_supabase_auth_client_signs_up_signs_in_refreshes_and_signs_out(
    live_server: str,
) -> None:
    client = SyncGoTrueClient(url=f"{live_server}/auth/v1", auto_refresh_token=False)
    email = new_email()

    signed_up = client.sign_up({"email": email, "password": PASSWORD})
    assert signed_up.user is not None
    assert signed_up.user.email == email
    assert signed_up.session is not None

    signed_in = client.sign_in_with_password({"email": email, "password": PASSWORD})
    assert signed_in.session is not None
    assert signed_in.user is not None
    assert signed_in.user.id == signed_up.user.id
    # Signed with the deployment's ES256 key; the client verifies it against the JWKS.
    verified = client.get_claims(signed_in.session.access_token)
    assert verified is not None
    assert verified["headers"]["alg"] == "ES256"
    claims = verified["claims"]
    assert claims["sub"] == signed_up.user.id
    assert claims["role"] == "authenticated"
    assert claims["email"] == email
    assert claims["exp"] > time.time()

    first_refresh_token = signed_in.session.refresh_token
    refreshed = client.refresh_session()
    assert refreshed.session is not None
    assert refreshed.session.refresh_token != first_refresh_token

    fetched = client.get_user()
    assert fetched is not None
    assert fetched.user.id == signed_up.user.id

    latest_refresh_token = refreshed.session.refresh_token
    client.sign_out()
    with pytest.raises(AuthApiError):
        client.refresh_session(latest_refresh_token)


def test_supabase_auth_client_gets_gotrue_error_for_wrong_password(live_server: str) -> None:
    client = SyncGoTrueClient(url=f"{live_server}/auth/v1", auto_refresh_token=False)
    email = new_email()
    client.sign_up({"email": email, "password": PASSWORD})
    with pytest.raises(AuthApiError) as raised:
        client.sign_in_with_password({"email": email, "password": "not the password"})
    assert raised.value.status == 400
    assert raised.value.code == "invalid_credentials"


async def sign_up(client: httpx.AsyncClient, email: str) -> dict[str, object]:
    response = await client.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/auth/v1/token", params={"grant_type": "password"},
        json={"email": email, "password": password},
    )  # fmt: skip


async def test_unknown_user_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await sign_up(client, email)
    wrong_password = await sign_in(client, email, "wrong password!")
    unknown_user = await sign_in(client, new_email(), "wrong password!")
    assert wrong_password.status_code == unknown_user.status_code == 400
    assert (
        wrong_password.json()
        == unknown_user.json()
        == {
            "code": 400,
            "error_code": "invalid_credentials",
            "msg": "Invalid login credentials",
        }
    )


async def test_repeated_failed_sign_ins_for_one_email_are_throttled(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await sign_up(client, email)
    for _ in range(5):  # the default allowance
        assert (await sign_in(client, email, "wrong password!")).status_code == 400
    throttled = await sign_in(client, email, PASSWORD)
    assert throttled.status_code == 429
    assert throttled.json()["error_code"] == "over_request_rate_limit"
    assert int(throttled.headers["Retry-After"]) > 0
    other = new_email()
    await sign_up(client, other)
    assert (await sign_in(client, other, PASSWORD)).status_code == 200  # only that email


async def test_sign_up_with_a_taken_email_or_weak_password_is_refused(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await sign_up(client, email)
    taken = await client.post(
        "/auth/v1/signup", json={"email": email.upper(), "password": PASSWORD}
    )
    assert taken.status_code == 422
    assert taken.json()["error_code"] == "user_already_exists"
    weak = await client.post("/auth/v1/signup", json={"email": new_email(), "password": "abc"})
    assert weak.status_code == 422
    assert weak.json()["error_code"] == "weak_password"
    bad_email = await client.post(
        "/auth/v1/signup", json={"email": "not-an-email", "password": PASSWORD}
    )
    assert bad_email.status_code == 400
    assert bad_email.json()["error_code"] == "validation_failed"


async def test_refresh_token_rotates_and_a_reused_one_ends_the_session(
    client: httpx.AsyncClient,
) -> None:
    session = await sign_up(client, new_email())
    first = session["refresh_token"]

    async def refresh(token: object) -> httpx.Response:
        return await client.post(
            "/auth/v1/token", params={"grant_type": "refresh_token"},
            json={"refresh_token": token},
        )  # fmt: skip

    second = await refresh(first)
    assert second.status_code == 200
    reused = await refresh(first)
    assert reused.status_code == 400
    assert reused.json()["error_code"] == "refresh_token_not_found"
    # Reuse revoked the whole session: the successor token is dead too.
    assert (await refresh(second.json()["refresh_token"])).status_code == 400


async def test_logout_revokes_the_refresh_tokens(client: httpx.AsyncClient) -> None:
    session = await sign_up(client, new_email())
    headers = {"Authorization": f"Bearer {session['access_token']}"}
    assert (await client.post("/auth/v1/logout", headers=headers)).status_code == 204
    refreshed = await client.post(
        "/auth/v1/token", params={"grant_type": "refresh_token"},
        json={"refresh_token": session["refresh_token"]},
    )  # fmt: skip
    assert refreshed.status_code == 400


def supabase_style_token(secret: str, **overrides: object) -> str:
    """A token as a Supabase project issues it (iss, aud, role, session_id, aal…)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "https://abcdefgh.supabase.co/auth/v1",
        "sub": str(uuid.uuid4()),
        "aud": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "email": "someone@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    claims.update(overrides)
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_token_from_a_supabase_project_with_the_same_secret_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    session = await sign_up(client, new_email())
    user = session["user"]
    assert isinstance(user, dict)
    token = supabase_style_token(TEST_JWT_SECRET, sub=user["id"])
    response = await client.get("/auth/v1/user", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["id"] == user["id"]


@pytest.mark.parametrize(
    "token",
    [
        supabase_style_token("another secret of the same kind, 32b+"),
        supabase_style_token(TEST_JWT_SECRET, exp=int(time.time()) - 10),
        supabase_style_token(TEST_JWT_SECRET, aud="somebody-else"),
        "not.a.jwt",
    ],
    ids=["tampered", "expired", "wrong-audience", "garbage"],
)
async def test_bad_tokens_get_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/auth/v1/user", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error_code"] == "no_authorization"


async def test_fifty_concurrent_wrong_passwords_get_five_password_checks(
    settings: Settings, api_urls: StackUrls
) -> None:
    """Check-and-count is one step: racing attempts cannot all pass the check before
    the first failure is counted."""
    roomy = settings.model_copy(update={"rate_limit_sign_in_per_ip_per_minute": 1000})
    app = create_app(roomy, api_urls)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            email = new_email()
            await sign_up(http, email)
            answers = await asyncio.gather(
                *(sign_in(http, email, "wrong password!") for _ in range(50))
            )
            codes = sorted(answer.json()["error_code"] for answer in answers)
            assert codes == ["invalid_credentials"] * 5 + ["over_request_rate_limit"] * 45
            assert (await sign_in(http, email, PASSWORD)).status_code == 429


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
async def test_forwarded_addresses_count_only_from_a_trusted_proxy(
    settings: Settings, api_urls: StackUrls, trusted: str
) -> None:
    """The per-address sign-in limit keys on the client's address; X-Forwarded-For names
    it only when the request comes from SYNTERA_TRUSTED_PROXIES (none by default)."""
    # A roomy Redis timeout: this limit fails open, and a loaded machine must not turn
    # the 429 under test into a pass.
    configured = settings.model_copy(update={
        "rate_limit_sign_in_per_ip_per_minute": 2, "trusted_proxies": trusted,
        "redis_timeout_s": 5.0,
    })  # fmt: skip
    # Forget what other tests' sign-ins from this machine counted against it.
    redis = aioredis.from_url(api_urls.redis_url)
    for address in ("127.0.0.1", *(f"203.0.113.{n}" for n in (1, 2, 3))):
        stale = [
            key async for key in redis.scan_iter(f"{global_key('sign-in-ip', digest(address))}*")
        ]
        if stale:
            await redis.delete(*stale)
    await redis.aclose()
    app = create_app(configured, api_urls)
    with serving(app, **proxy_options(configured)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            codes = []
            for n in range(3):  # three "different" clients behind the same socket
                answer = await http.post(
                    "/auth/v1/token?grant_type=password",
                    json={"email": new_email(), "password": "wrong password!"},
                    headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
                )
                codes.append(answer.status_code)
    if trusted:
        assert codes == [400, 400, 400], "each forwarded address has its own allowance"
    else:
        assert codes == [400, 400, 429], "forged X-Forwarded-For is ignored"
