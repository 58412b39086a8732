"""/auth/v1, the flows beyond sign-in: changing the user, recovery, magic links and codes,
email confirmation, and the server's own descriptions (settings, health, JWKS).

As GoTrue: the answer to ``/recover``, ``/otp`` and ``/resend`` is the same whether or
not the address has an account (unlike GoTrue, also for ``create_user: false``, whose
422 would tell), and so is the work behind it: the request only records the ask, and
the mail worker finds the account, issues the token and sends the mail
(``syntera.auth.mail``). Every token is single-use and expires; verifications that fail
are throttled per client address and per email.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode, urlsplit
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from syntera import __version__
from syntera.api.deps import principal
from syntera.api.state import limiters_of, settings_of, system_transaction
from syntera.auth import mail, onetime, service
from syntera.auth.common_routes import (
    ERRORS,
    GoTrueError,
    auth_user,
    client_ip,
    hold_live_session,
    keys_of,
    new_session,
    session_of,
    weak_password,
)
from syntera.auth.passwords import hash_password, verify_password
from syntera.auth.schemas import MAX_PASSWORD_LENGTH, AuthUser, Session
from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.db.redis import digest, global_key
from syntera.ratelimit import SlidingWindow
from syntera.tenancy import Principal

router = APIRouter(prefix="/auth/v1", tags=["auth"])

EMAIL = r"^[^@\s]+@[^@\s]+$"
MAIL_WAIT = "For security purposes, you can only request this after {} seconds."
INVALID_TOKEN = GoTrueError(403, "otp_expired", "Token has expired or is invalid")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # gotrue_meta_security, code_challenge, ...


class UserUpdate(_Body):
    email: str | None = Field(default=None, min_length=3, max_length=255, pattern=EMAIL)
    password: str | None = Field(default=None, min_length=1, max_length=MAX_PASSWORD_LENGTH)
    data: dict[str, Any] | None = Field(default=None, description="User metadata to merge.")


class EmailOnly(_Body):
    email: str = Field(min_length=3, max_length=255, pattern=EMAIL)


class OtpRequest(EmailOnly):
    create_user: bool = Field(default=True, description="GoTrue's should_create_user.")
    data: dict[str, Any] | None = None


class ResendRequest(EmailOnly):
    type: Literal["signup", "email_change"]


VerifyType = Literal["signup", "invite", "magiclink", "recovery", "email_change", "email"]


class VerifyRequest(_Body):
    type: VerifyType
    token: str | None = Field(default=None, min_length=1, max_length=512)
    token_hash: str | None = Field(default=None, min_length=1, max_length=512)
    email: str | None = Field(default=None, min_length=3, max_length=255, pattern=EMAIL)
    redirect_to: str | None = Field(default=None, max_length=2048)


# Redirects -------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """GoTrue's redirect globs: ``**`` matches anything, ``*`` and ``?`` stop at ``.`` and
    ``/`` (so ``https://*.example.com`` does not match ``https://evil.com/.example.com``)."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    table = {"**": ".*", "*": "[^./]*", "?": "[^./]"}
    return re.compile("".join(table.get(part, re.escape(part)) for part in parts))


def allowed_redirect(settings: Settings, redirect_to: str | None) -> str:
    """The redirect to use: ``redirect_to`` if the site URL (any path of it) or the
    allow-list admits it, the site URL if none was asked; 400 otherwise."""
    if not redirect_to:
        return settings.auth_site_url
    refused = GoTrueError(
        400,
        "validation_failed",
        f"redirect_to {redirect_to!r} is not allowed: it must be on the site URL "
        "(SYNTERA_AUTH_SITE_URL) or match SYNTERA_AUTH_REDIRECT_URLS",
    )
    try:
        site, asked = urlsplit(settings.auth_site_url), urlsplit(redirect_to)
    except ValueError:  # "http://[": not a URL, so on no allowed site either
        raise refused from None
    if (asked.scheme, asked.netloc) == (site.scheme, site.netloc):
        return redirect_to
    if any(_glob(pattern).fullmatch(redirect_to) for pattern in settings.auth_redirect_list):
        return redirect_to
    raise refused


LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _public_base(request: Request) -> str:
    """Where the links in mail point: SYNTERA_PUBLIC_URL; unset, the request's own URL
    only when it names this machine (the embedded default) — anyone can send any Host
    header, and a link to their host would hand them the token — otherwise the address
    the API listens on."""
    settings = settings_of(request)
    if settings.public_url:
        return settings.public_url.rstrip("/")
    if request.url.hostname in LOOPBACK:
        return str(request.base_url).rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def verify_link(request: Request, kind: str, token: str, redirect_to: str) -> str:
    return mail.verify_link(_public_base(request), kind, token, redirect_to)


# Limits ----------------------------------------------------------------------------------


async def limit_mail(request: Request, email: str) -> None:
    """One auth mail per address per SYNTERA_RATE_LIMIT_MAIL_PER_EMAIL_S, and so many per
    client address an hour: counted for every request, whether or not the address has
    an account, so the 429 tells nothing either."""
    limiters = limiters_of(request)
    for limiter, key in (
        (limiters.mail_ip, global_key("mail-ip", digest(client_ip(request)))),
        (limiters.mail_email, global_key("mail-email", digest(service.normalize_email(email)))),
    ):
        await _hit(limiter, key, "over_email_send_rate_limit", MAIL_WAIT)


async def _hit(limiter: SlidingWindow, key: str, error_code: str, message: str) -> None:
    """Count one attempt; 429 (``message`` formatted with the seconds to wait) when the
    window is full, 503 when Redis cannot say (these limits fail closed)."""
    verdict = await limiter.hit(key)
    if verdict.allowed:
        return
    if verdict.degraded:
        raise GoTrueError(
            503, "service_unavailable", "The rate limit cannot be checked; retry shortly",
            headers={"Retry-After": "1"},
        )  # fmt: skip
    raise GoTrueError(
        429, error_code, message.format(verdict.retry_after_s),
        headers={"Retry-After": str(verdict.retry_after_s)},
    )  # fmt: skip


async def ask_mail(
    request: Request,
    conn: TenantConnection,
    kind: str,
    email: str,
    redirect_to: str,
    user_id: UUID | None = None,
) -> None:
    """Ask the mail worker for a mail of ``kind`` about ``email`` (see syntera.auth.mail),
    in the caller's transaction."""
    await mail.ask(conn, kind, email, redirect_to, _public_base(request), user_id)


def check_password(settings: Settings, password: str) -> None:
    if len(password) < settings.min_password_length:
        raise weak_password(settings.min_password_length)


# The signed-in user -----------------------------------------------------------------------


SignedIn = Annotated[Principal, Depends(principal)]


@router.put("/user", response_model=AuthUser, responses=ERRORS)
async def update_user(
    request: Request,
    body: UserUpdate,
    caller: SignedIn,
    redirect_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> AuthUser:
    """Change the signed-in user's password (ending their other sessions, by default),
    email (takes effect once the link sent to the new address is followed) or metadata
    (merged into what is there). Only with the access token of a session that goes on,
    of a user who is not banned (403 ``session_not_found``, ``user_banned``)."""
    settings = settings_of(request)
    if caller.user_id is None:
        raise GoTrueError(403, "no_authorization", "This endpoint requires a user token")
    redirect = allowed_redirect(settings, redirect_to)
    # Before any password is hashed or compared: an ended session learns nothing here.
    async with system_transaction(request) as conn:
        await hold_live_session(conn, caller)
        user = await service.find_user(conn, caller.user_id)
    if user is None:
        raise GoTrueError(404, "user_not_found", "User from sub claim in JWT does not exist")
    new_hash = None
    if body.password is not None:
        check_password(settings, body.password)
        new_hash = await hash_password(body.password)  # before the transaction opens
    if body.password is not None and await verify_password(
        user["encrypted_password"], body.password
    ):
        raise GoTrueError(
            422, "same_password", "New password should be different from the old password."
        )
    email_change = body.email is not None and service.normalize_email(body.email) != user["email"]
    if email_change:
        assert body.email is not None
        await limit_mail(request, body.email)
    async with system_transaction(request) as conn:
        # Again, in the transaction that changes: the session may have ended meanwhile
        # (another session's password change, waited for by the lock).
        await hold_live_session(conn, caller)
        changes: dict[str, Any] = {}
        if new_hash is not None:
            changes["encrypted_password"] = new_hash
        if body.data is not None:
            changes["raw_user_meta_data"] = body.data
        user = await service.update_user(conn, caller.user_id, **changes)
        if new_hash is not None and settings.auth_password_change_signs_out_others:
            await service.end_sessions(conn, caller.user_id, session_of(caller), "others")
        new_email = None
        if email_change:
            assert body.email is not None
            taken = await service.find_any_user_by_email(conn, body.email)
            if taken is not None:
                raise GoTrueError(
                    422,
                    "email_exists",
                    "A user with this email address has already been registered",
                )
            new_email = service.normalize_email(body.email)
            await ask_mail(request, conn, "email_change", new_email, redirect, caller.user_id)
    answer = auth_user(user)
    if new_email is not None:
        answer.new_email = new_email
        answer.email_change_sent_at = datetime.now(UTC)
    return answer


# Mail that signs in ------------------------------------------------------------------------


@router.post("/recover", responses=ERRORS)
async def recover(
    request: Request,
    body: EmailOnly,
    redirect_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """Send a password recovery link (and code) to the address, if it has an account;
    the answer is the same either way."""
    redirect = allowed_redirect(settings_of(request), redirect_to)
    await limit_mail(request, body.email)
    async with system_transaction(request) as conn:
        await ask_mail(request, conn, "recovery", body.email, redirect)
    return {}


@router.post("/otp", responses=ERRORS)
async def otp(
    request: Request,
    body: OtpRequest,
    redirect_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """Send a magic link (and code) that signs in; with ``create_user`` (the default) an
    address without an account gets one, confirmed when the link is followed."""
    redirect = allowed_redirect(settings_of(request), redirect_to)
    await limit_mail(request, body.email)
    async with system_transaction(request) as conn:
        if body.create_user:  # one INSERT, which a taken address turns into nothing
            await service.create_user_if_missing(conn, body.email, body.data or {})
        await ask_mail(request, conn, "magiclink", body.email, redirect)
    return {}


@router.post("/resend", responses=ERRORS)
async def resend(
    request: Request,
    body: ResendRequest,
    redirect_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """Send the sign-up confirmation again (to an unconfirmed account), or the link of a
    pending email change (to the new address); the answer is the same either way."""
    redirect = allowed_redirect(settings_of(request), redirect_to)
    await limit_mail(request, body.email)
    async with system_transaction(request) as conn:
        await ask_mail(request, conn, body.type, body.email, redirect)
    return {}


def _banned(user: dict[str, Any]) -> bool:
    until = user.get("banned_until")
    return until is not None and until > datetime.now(UTC)


# Verification ---------------------------------------------------------------------------


async def _verify(
    request: Request,
    verify_type: str,
    *,
    link_token: str | None = None,
    email: str | None = None,
    code: str | None = None,
) -> tuple[Session, str | None]:
    """Spend a token (a link token, or an email and its code) and open a session; the
    session and the redirect stored with the token. Throttled: each attempt counts
    against the client's address (and the email, for codes) until one succeeds."""
    limiters = limiters_of(request)
    limits = [(limiters.verify_ip, global_key("verify-ip", digest(client_ip(request))))]
    if email is not None:
        email_key = global_key("verify-email", digest(service.normalize_email(email)))
        limits.append((limiters.verify_email, email_key))
    for limiter, key in limits:
        await _hit(limiter, key, "over_request_rate_limit",
                   "Too many failed verifications; try again in {} seconds")  # fmt: skip
    async with system_transaction(request) as conn:
        if link_token is not None:
            row = await onetime.spend_link(conn, link_token, verify_type)
        else:
            assert email is not None
            assert code is not None
            secret = keys_of(request).jwt_secret
            row = await onetime.spend_code(conn, secret, email, code, verify_type)
        if row is None:
            raise INVALID_TOKEN
        user = await service.find_user(conn, row["user_id"])
        if user is None:
            raise INVALID_TOKEN
        if _banned(user):
            raise GoTrueError(403, "user_banned", "User is banned")
        changes: dict[str, Any] = {"email_confirmed_at": "now"}
        if row["kind"] == "email_change":
            changes["email"] = row["email"]
        try:
            user = await service.update_user(conn, user["id"], **changes)
        except service.EmailTaken:
            raise GoTrueError(
                422, "email_exists", "A user with this email address has already been registered"
            ) from None
        started = await service.start_session(conn, user["id"])
        user = await service.find_user(conn, user["id"])  # with last_sign_in_at
        assert user is not None
    for limiter, key in limits:
        await limiter.reset(key)
    method = "recovery" if row["kind"] == "recovery" else "otp"
    return new_session(request, user, started, method=method), row["redirect_to"]


@router.post("/verify", response_model=Session, responses=ERRORS)
async def verify(request: Request, body: VerifyRequest) -> Session:
    """Exchange a token for a session: ``token_hash`` (the link's token), or ``email``
    with ``token`` (the six-digit code), or ``token`` alone (the link's token)."""
    if body.token_hash is not None:
        session, _ = await _verify(request, body.type, link_token=body.token_hash)
    elif body.token is not None and body.email is not None:
        session, _ = await _verify(request, body.type, email=body.email, code=body.token)
    elif body.token is not None:
        session, _ = await _verify(request, body.type, link_token=body.token)
    else:
        raise GoTrueError(400, "validation_failed", "Verify requires a token or a token_hash")
    return session


@router.get("/verify", response_class=RedirectResponse, status_code=303, responses=ERRORS)
async def verify_redirect(
    request: Request,
    token: Annotated[str, Query(min_length=1, max_length=512)],
    type: Annotated[VerifyType, Query()],
    redirect_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> RedirectResponse:
    """The link in the mail: spend the token and redirect (303) to ``redirect_to`` with
    the session in the fragment (``#access_token=…&refresh_token=…&type=…``), or with
    ``#error=…`` when the token is spent, expired or unknown."""
    settings = settings_of(request)
    target = allowed_redirect(settings, redirect_to)
    try:
        session, stored = await _verify(request, type, link_token=token)
    except GoTrueError as error:
        fragment = urlencode({
            "error": "access_denied" if error.status == 403 else "invalid_request",
            "error_code": error.error_code, "error_description": error.msg,
        }, quote_via=quote)  # fmt: skip
        return RedirectResponse(f"{target}#{fragment}", status_code=303)
    if redirect_to is None and stored:
        target = allowed_redirect(settings, stored)
    fragment = urlencode({
        "access_token": session.access_token, "expires_at": session.expires_at,
        "expires_in": session.expires_in, "refresh_token": session.refresh_token,
        "token_type": "bearer", "type": type,
    })  # fmt: skip
    return RedirectResponse(f"{target}#{fragment}", status_code=303)


# The server itself ------------------------------------------------------------------------


@router.get("/settings")
async def auth_settings(request: Request) -> dict[str, Any]:
    """Which ways to sign in this server offers, as GoTrue describes them."""
    settings = settings_of(request)
    providers = ("anonymous_users", "apple", "azure", "bitbucket", "discord", "facebook",
                 "figma", "github", "gitlab", "google", "keycloak", "kakao", "linkedin",
                 "notion", "phone", "saml", "slack", "spotify", "twitch", "twitter",
                 "workos", "zoom")  # fmt: skip
    return {
        "external": {**dict.fromkeys(providers, False), "email": True},
        "disable_signup": False,
        "mailer_autoconfirm": not settings.auth_confirm_email,
        "phone_autoconfirm": False,
        "sms_provider": "",
        "saml_enabled": False,
    }


@router.get("/health")
async def health() -> dict[str, str]:
    return {
        "version": __version__,
        "name": "GoTrue",
        "description": "GoTrue is a user registration and authentication API",
    }


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    """The public keys that verify this server's access tokens (none when it signs with
    the HS256 secret)."""
    return {"keys": keys_of(request).ring.jwks}


def fake_user(email: str) -> AuthUser:
    """What sign-up answers for a taken address when confirmation is on: shaped like a
    new, unconfirmed user, so the answer does not tell that the address has an account
    (GoTrue does the same)."""
    now = datetime.now(UTC)
    return AuthUser(
        id=str(uuid4()), email=service.normalize_email(email), email_confirmed_at=None,
        confirmed_at=None, last_sign_in_at=None, app_metadata=dict(service.EMAIL_APP_METADATA),
        user_metadata={}, created_at=now, updated_at=now, confirmation_sent_at=now,
    )  # fmt: skip
