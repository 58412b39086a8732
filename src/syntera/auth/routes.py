"""/auth/v1: the Supabase Auth (GoTrue) endpoints a client needs for email and password.

Paths, bodies and error shapes follow GoTrue, so ``supabase-auth``'s client works
against this server. Accounts are confirmed at sign-up (GoTrue's autoconfirm).
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from syntera.api.deps import principal
from syntera.api.state import limiters_of, settings_of, system_transaction
from syntera.auth import flow_routes as flows
from syntera.auth import service
from syntera.auth.common_routes import (
    ERRORS,
    INVALID_CREDENTIALS,
    GoTrueError,
    auth_user,
    client_ip,
    hold_live_session,
    new_session,
    session_of,
)
from syntera.auth.passwords import hash_password, verify_password
from syntera.auth.schemas import AuthUser, Credentials, RefreshGrant, Session, SignUp
from syntera.db.redis import digest, global_key
from syntera.tenancy import Principal

router = APIRouter(prefix="/auth/v1", tags=["auth"])


@router.post("/signup", response_model=Session | AuthUser, responses=ERRORS)
async def signup(
    request: Request,
    body: SignUp,
    redirect_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> Session | AuthUser:
    """Create an account and return its first session; with SYNTERA_AUTH_CONFIRM_EMAIL,
    send a confirmation link instead and return the (unconfirmed) user."""
    settings = settings_of(request)
    flows.check_password(settings, body.password)
    confirm = settings.auth_confirm_email
    redirect = flows.allowed_redirect(settings, redirect_to) if confirm else None
    if confirm:
        await flows.limit_mail(request, body.email)
    password_hash = await hash_password(body.password)  # before the transaction opens
    async with system_transaction(request) as conn:
        try:
            user = await service.create_user(
                conn, body.email, password_hash, body.data, confirmed=not confirm
            )
        except service.EmailTaken:
            if not confirm:
                raise GoTrueError(422, "user_already_exists", "User already registered") from None
            # The same answer and work as for a new address (the worker drops the ask
            # unless the account is still unconfirmed).
            assert redirect is not None
            await flows.ask_mail(request, conn, "signup", body.email, redirect)
            return flows.fake_user(body.email)
        if confirm:
            assert redirect is not None
            await flows.ask_mail(request, conn, "signup", user["email"], redirect)
            answer = auth_user(user)
            answer.confirmation_sent_at = answer.created_at
            return answer
        new = await service.start_session(conn, user["id"])
    return new_session(request, user, new)


@router.post("/token", response_model=Session, responses=ERRORS)
async def token(
    request: Request,
    grant_type: Annotated[Literal["password", "refresh_token"], Query()],
    body: Annotated[Credentials | RefreshGrant, Body()],
) -> Session:
    """Sign in with a password (``grant_type=password``: email and password), or trade a
    refresh token for a new session (``grant_type=refresh_token``: refresh_token)."""
    if grant_type == "password" and isinstance(body, Credentials):
        return await _password_grant(request, body)
    if grant_type == "refresh_token" and isinstance(body, RefreshGrant):
        return await _refresh_grant(request, body)
    raise GoTrueError(400, "validation_failed", f"The body does not fit grant_type={grant_type}")


async def _password_grant(request: Request, body: Credentials) -> Session:
    limiters = limiters_of(request)
    address_key = global_key("sign-in-ip", digest(client_ip(request)))
    await limiters.enforce(limiters.sign_in_ip, address_key, "sign-in attempts from your address")
    failures = limiters.sign_in_email_failures
    throttle_key = global_key("sign-in-failures", digest(service.normalize_email(body.email)))
    # Check and count in one step (one Lua call): of any number of concurrent attempts,
    # only as many as the window has room for go on to a password check. A sign-in that
    # succeeds forgets the count; one that fails leaves its attempt counted.
    verdict = await failures.hit(throttle_key)
    if not verdict.allowed:
        raise GoTrueError(
            429,
            "over_request_rate_limit",
            "Too many failed sign-in attempts; try again later",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )
    async with system_transaction(request) as conn:
        user = await service.find_user_by_email(conn, body.email)
    stored_hash = user["encrypted_password"] if user else None
    # The same answer, after the same work, for an unknown email and a wrong password.
    if not await verify_password(stored_hash, body.password) or user is None:
        raise INVALID_CREDENTIALS
    if user["email_confirmed_at"] is None:
        raise GoTrueError(400, "email_not_confirmed", "Email not confirmed")
    await failures.reset(throttle_key)
    async with system_transaction(request) as conn:
        new = await service.start_session(conn, user["id"])
        user = await service.find_user(conn, user["id"])  # with last_sign_in_at
    assert user is not None
    return new_session(request, user, new)


async def _refresh_grant(request: Request, body: RefreshGrant) -> Session:
    async with system_transaction(request) as conn:
        try:
            user_id, new = await service.rotate_refresh_token(conn, body.refresh_token)
        except service.InvalidRefreshToken:
            user = None  # committed: a reused token's session stays revoked
        else:
            user = await service.find_user(conn, user_id)
    if user is None:
        raise GoTrueError(
            400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
        )
    return new_session(request, user, new)


SignedIn = Annotated[Principal, Depends(principal)]


def _user_id(caller: Principal) -> UUID:
    if caller.user_id is None:
        raise GoTrueError(403, "no_authorization", "This endpoint requires a user token")
    return caller.user_id


@router.get("/user", response_model=AuthUser, responses=ERRORS)
async def get_user(request: Request, caller: SignedIn) -> AuthUser:
    """The signed-in user."""
    async with system_transaction(request) as conn:
        user = await service.find_user(conn, _user_id(caller))
    if user is None:
        raise GoTrueError(404, "user_not_found", "User from sub claim in JWT does not exist")
    return auth_user(user)


@router.post("/logout", status_code=204, responses=ERRORS)
async def logout(
    request: Request,
    caller: SignedIn,
    scope: Annotated[Literal["global", "local", "others"], Query()] = "global",
) -> Response:
    """End this session (``local``), the others, or all of them (``global``, default);
    their refresh tokens stop working, and their access tokens can no longer change
    credentials or sessions (403 ``session_not_found``); other endpoints accept them until
    they expire. A session that has ended ends no other."""
    user_id = _user_id(caller)
    async with system_transaction(request) as conn:
        await hold_live_session(conn, caller, banned_may=True)
        await service.end_sessions(conn, user_id, session_of(caller), scope)
    return Response(status_code=204)
