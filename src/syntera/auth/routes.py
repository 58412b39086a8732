"""/auth/v1: the Supabase Auth (GoTrue) endpoints a client needs for email and password.

Paths, bodies and error shapes follow GoTrue, so ``supabase-auth``'s client works
against this server. Accounts are confirmed at sign-up (GoTrue's autoconfirm).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from syntera.api.deps import principal
from syntera.api.state import keys_of, limiters_of, settings_of, system_transaction
from syntera.auth import service
from syntera.auth.passwords import hash_password, verify_password
from syntera.auth.schemas import AuthError, AuthUser, Credentials, RefreshGrant, Session, SignUp
from syntera.auth.tokens import issue_access_token
from syntera.db.redis import digest, global_key
from syntera.tenancy import Principal

router = APIRouter(prefix="/auth/v1", tags=["auth"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": AuthError, "description": "Invalid credentials or request"},
    401: {"model": AuthError, "description": "Missing or invalid token"},
    422: {"model": AuthError, "description": "Weak password or email taken"},
    429: {"model": AuthError, "description": "Too many failed sign-ins"},
}


class GoTrueError(Exception):
    """An error answered in GoTrue's shape."""

    def __init__(
        self, status: int, error_code: str, msg: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(msg)
        self.status, self.error_code, self.msg, self.headers = status, error_code, msg, headers

    def response(self) -> JSONResponse:
        body = AuthError(code=self.status, error_code=self.error_code, msg=self.msg)
        return JSONResponse(body.model_dump(), self.status, headers=self.headers)


INVALID_CREDENTIALS = GoTrueError(400, "invalid_credentials", "Invalid login credentials")


def _auth_user(row: dict[str, Any]) -> AuthUser:
    confirmed = row["email_confirmed_at"]
    return AuthUser(
        id=str(row["id"]),
        email=row["email"],
        email_confirmed_at=confirmed,
        confirmed_at=confirmed,
        last_sign_in_at=row["last_sign_in_at"],
        app_metadata=row["app_metadata"],
        user_metadata=row["user_metadata"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _session(request: Request, user: dict[str, Any], new: service.NewSession) -> Session:
    settings = settings_of(request)
    access = issue_access_token(
        keys_of(request),
        user_id=user["id"],
        email=user["email"],
        session_id=new.session_id,
        lifetime_s=settings.access_token_lifetime_s,
        issuer=str(request.url_for("token")).split("?")[0].removesuffix("/token"),
        user_metadata=user["user_metadata"],
        app_metadata=user["app_metadata"],
    )
    return Session(
        access_token=access.token,
        expires_in=access.expires_in,
        expires_at=access.expires_at,
        refresh_token=new.refresh_token,
        user=_auth_user(user),
    )


@router.post("/signup", response_model=Session, responses=ERRORS)
async def signup(request: Request, body: SignUp) -> Session:
    """Create an account (confirmed at once) and return its first session."""
    if len(body.password) < settings_of(request).min_password_length:
        raise GoTrueError(
            422,
            "weak_password",
            f"Password should be at least {settings_of(request).min_password_length} characters.",
        )
    password_hash = await hash_password(body.password)  # before the transaction opens
    async with system_transaction(request) as conn:
        try:
            user = await service.create_user(conn, body.email, password_hash, body.data)
        except service.EmailTaken:
            raise GoTrueError(422, "user_already_exists", "User already registered") from None
        new = await service.start_session(conn, user["id"])
    return _session(request, user, new)


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
    client_ip = request.client.host if request.client else "unknown"
    await limiters.enforce(limiters.sign_in_ip, global_key("sign-in-ip", digest(client_ip)),
                           "sign-in attempts from your address")  # fmt: skip
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
    await failures.reset(throttle_key)
    async with system_transaction(request) as conn:
        new = await service.start_session(conn, user["id"])
        user = await service.find_user(conn, user["id"])  # with last_sign_in_at
    assert user is not None
    return _session(request, user, new)


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
    return _session(request, user, new)


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
    return _auth_user(user)


@router.post("/logout", status_code=204, responses=ERRORS)
async def logout(
    request: Request,
    caller: SignedIn,
    scope: Annotated[Literal["global", "local", "others"], Query()] = "global",
) -> Response:
    """End this session (``local``), the others, or all of them (``global``, default);
    their refresh tokens stop working. Access tokens already issued run until expiry."""
    session_id = caller.claims.get("session_id")
    try:
        session_uuid = UUID(str(session_id)) if session_id else None
    except ValueError:
        session_uuid = None
    async with system_transaction(request) as conn:
        await service.end_sessions(conn, _user_id(caller), session_uuid, scope)
    return Response(status_code=204)
