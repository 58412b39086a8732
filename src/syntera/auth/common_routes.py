"""The answers of /auth/v1, shaped as GoTrue shapes them: errors, users and sessions."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from fastapi import Request
from fastapi.responses import JSONResponse

from syntera.api.state import settings_of
from syntera.auth import service
from syntera.auth.schemas import AuthError, AuthUser, Session
from syntera.auth.tokens import Keys, issue_access_token
from syntera.db.postgres import TenantConnection
from syntera.tenancy import Principal


def keys_of(request: Request) -> Keys:
    """The secrets that decide who a bearer is (this process's, loaded with the app)."""
    return cast(Keys, request.app.state.keys)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": AuthError, "description": "Invalid credentials or request"},
    401: {"model": AuthError, "description": "Missing or invalid token"},
    403: {"model": AuthError, "description": "Not allowed, or a token spent or expired"},
    404: {"model": AuthError, "description": "No such user"},
    422: {"model": AuthError, "description": "Weak password or email taken"},
    429: {"model": AuthError, "description": "Too many attempts or mails"},
    503: {"model": AuthError, "description": "The signing keys or the limits cannot be used"},
}


class GoTrueError(Exception):
    """An error answered in GoTrue's shape."""

    def __init__(
        self,
        status: int,
        error_code: str,
        msg: str,
        headers: dict[str, str] | None = None,
        weak_password: list[str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status, self.error_code, self.msg, self.headers = status, error_code, msg, headers
        self.weak_password = weak_password

    def response(self) -> JSONResponse:
        reasons = {"reasons": self.weak_password} if self.weak_password else None
        body = AuthError(
            code=self.status, error_code=self.error_code, msg=self.msg, weak_password=reasons
        )
        return JSONResponse(body.model_dump(exclude_none=True), self.status, headers=self.headers)


def weak_password(minimum: int) -> GoTrueError:
    """GoTrue's answer to a password under the minimum length."""
    return GoTrueError(
        422, "weak_password", f"Password should be at least {minimum} characters.",
        weak_password=["length"],
    )  # fmt: skip


INVALID_CREDENTIALS = GoTrueError(400, "invalid_credentials", "Invalid login credentials")


def client_ip(request: Request) -> str:
    """The client's address, as the per-address limits count it."""
    return request.client.host if request.client else "unknown"


def session_of(caller: Principal) -> UUID | None:
    """The session an access token was issued for (None if it names none)."""
    session_id = caller.claims.get("session_id")
    try:
        return UUID(str(session_id)) if session_id else None
    except ValueError:
        return None


async def hold_live_session(
    conn: TenantConnection, caller: Principal, *, banned_may: bool = False
) -> None:
    """Go on only if the caller's access token names a session that goes on (and, unless
    ``banned_may``, a user who is not banned), the account locked until ``conn``'s
    transaction ends; otherwise GoTrue's answers: 403 ``session_not_found`` (logged out,
    ended by a password change), 403 ``user_banned``, 404 ``user_not_found``. What the
    endpoints that change credentials or sessions check; the others trust an access
    token until it expires."""
    assert caller.user_id is not None
    state = await service.hold_session(conn, caller.user_id, session_of(caller))
    if state is service.SessionState.NO_USER:
        raise GoTrueError(404, "user_not_found", "User from sub claim in JWT does not exist")
    if state is service.SessionState.ENDED:
        raise GoTrueError(
            403, "session_not_found", "Session from session_id claim in JWT does not exist"
        )
    if state is service.SessionState.BANNED and not banned_may:
        raise GoTrueError(403, "user_banned", "User is banned")


def auth_user(row: dict[str, Any]) -> AuthUser:
    confirmed = row["email_confirmed_at"]
    return AuthUser(
        id=str(row["id"]),
        email=row["email"],
        email_confirmed_at=confirmed,
        confirmed_at=confirmed,
        last_sign_in_at=row["last_sign_in_at"],
        banned_until=row.get("banned_until"),
        app_metadata=row["app_metadata"],
        user_metadata=row["user_metadata"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def new_session(
    request: Request, user: dict[str, Any], new: service.NewSession, method: str = "password"
) -> Session:
    """The session answer for a user who just proved who they are (``method``: how, as
    the token's ``amr`` says)."""
    settings = settings_of(request)
    ring = keys_of(request).ring
    if ring.signs and ring.signing is None:  # never a silent fall back to HS256
        raise GoTrueError(
            503, "service_unavailable", "The signing keys are not loaded yet; retry shortly",
            headers={"Retry-After": "1"},
        )  # fmt: skip
    access = issue_access_token(
        keys_of(request),
        user_id=user["id"],
        email=user["email"],
        session_id=new.session_id,
        lifetime_s=settings.access_token_lifetime_s,
        issuer=str(request.url_for("token")).split("?")[0].removesuffix("/token"),
        user_metadata=user["user_metadata"],
        app_metadata=user["app_metadata"],
        method=method,
    )
    return Session(
        access_token=access.token,
        expires_in=access.expires_in,
        expires_at=access.expires_at,
        refresh_token=new.refresh_token,
        user=auth_user(user),
    )
