"""/auth/v1/admin: GoTrue's admin API, for the service key (or a service_role JWT) only.

Users are listed, created (with or without a password, confirmed or not), changed
(email, password, metadata, ``ban_duration``), deleted and sent links
(``generate_link``, which returns the link instead of mailing it). Deleting a user takes
their membership and sessions with them; a company is never deleted by it: the user who
owns a company hands it to another owner of it, or the delete is refused saying why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from syntera.api.deps import principal
from syntera.api.state import settings_of, system_transaction
from syntera.auth import flow_routes as flows
from syntera.auth import onetime, service
from syntera.auth.common_routes import ERRORS, GoTrueError, auth_user, keys_of
from syntera.auth.passwords import hash_password
from syntera.auth.schemas import MAX_PASSWORD_LENGTH, AuthUser
from syntera.db.postgres import TenantConnection
from syntera.tenancy import Principal

router = APIRouter(prefix="/auth/v1/admin", tags=["auth admin"])

NOT_ADMIN = GoTrueError(403, "not_admin", "User not allowed")
USER_NOT_FOUND = GoTrueError(404, "user_not_found", "User not found")
EMAIL_EXISTS = GoTrueError(
    422, "email_exists", "A user with this email address has already been registered"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


async def service_caller(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    if caller.role != "service_role":
        raise NOT_ADMIN
    return caller


Admin = Annotated[Principal, Depends(service_caller)]


class UserAttributes(BaseModel):
    """GoTrue's AdminUserAttributes (phone sign-in is not offered)."""

    model_config = ConfigDict(extra="ignore")

    email: str | None = Field(default=None, min_length=3, max_length=255, pattern=flows.EMAIL)
    password: str | None = Field(default=None, min_length=1, max_length=MAX_PASSWORD_LENGTH)
    email_confirm: bool | None = None
    user_metadata: dict[str, Any] | None = None
    app_metadata: dict[str, Any] | None = None
    ban_duration: str | None = Field(
        default=None, max_length=32, description='"none", or a duration such as "24h", "90m".'
    )


class UserList(BaseModel):
    users: list[AuthUser]
    aud: str = "authenticated"


LinkType = Literal[
    "signup", "invite", "magiclink", "recovery", "email_change_current", "email_change_new"
]


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: LinkType
    email: str = Field(min_length=3, max_length=255, pattern=flows.EMAIL)
    password: str | None = Field(default=None, min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_email: str | None = Field(default=None, min_length=3, max_length=255, pattern=flows.EMAIL)
    data: dict[str, Any] | None = None
    redirect_to: str | None = Field(default=None, max_length=2048)


def ban_until(duration: str) -> datetime | None:
    """``"none"`` lifts a ban; ``"24h"``, ``"1h30m"``, ``"90s"`` (Go's durations) set one."""
    if duration == "none":
        return None
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise GoTrueError(
            400, "validation_failed", f'ban_duration {duration!r}: use "none" or e.g. "24h"'
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    try:
        return datetime.now(UTC) + timedelta(seconds=seconds)
    except OverflowError:  # past year 9999
        raise GoTrueError(
            400, "validation_failed", f"ban_duration {duration!r} is too long"
        ) from None


def _user_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise USER_NOT_FOUND from None


async def _changes(request: Request, body: UserAttributes) -> dict[str, Any]:
    """The auth.users columns a body sets (the password hashed, outside any transaction)."""
    changes: dict[str, Any] = {}
    if body.password is not None:
        flows.check_password(settings_of(request), body.password)
        changes["encrypted_password"] = await hash_password(body.password)
    if body.email_confirm is not None:
        changes["email_confirmed_at"] = "now" if body.email_confirm else None
    if body.user_metadata is not None:
        changes["raw_user_meta_data"] = body.user_metadata
    if body.app_metadata is not None:
        changes["raw_app_meta_data"] = body.app_metadata
    if body.ban_duration is not None:
        changes["banned_until"] = ban_until(body.ban_duration)
    return changes


def _blank_as(default: int) -> Callable[[Any], Any]:
    """A query value, or ``default`` for an empty one."""

    def value_or_default(value: Any) -> Any:
        return default if value == "" else value

    return value_or_default


@router.get("/users", response_model=UserList, responses=ERRORS)
async def list_users(
    request: Request,
    response: Response,
    _: Admin,
    page: Annotated[int, BeforeValidator(_blank_as(1)), Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, BeforeValidator(_blank_as(50)), Query(ge=1, le=1000)] = 50,
) -> UserList:
    """Every user, oldest first, a page at a time (``X-Total-Count`` and ``Link``
    headers, as GoTrue). An empty ``page`` or ``per_page`` is the default, as GoTrue
    reads it (``supabase-auth``'s ``list_users()`` sends ``page=&per_page=``)."""
    async with system_transaction(request) as conn:
        rows = await (await conn.execute(service.LIST_USERS,
                                         {"limit": per_page, "offset": (page - 1) * per_page})
                      ).fetchall()  # fmt: skip
        total_row = await (await conn.execute(service.COUNT_USERS)).fetchone()
    total = total_row["count"] if total_row else 0
    last = max(1, -(-total // per_page))
    base = str(request.url.remove_query_params(["page", "per_page"]))
    links = []
    if page < last:
        links.append(f'<{base}?page={page + 1}&per_page={per_page}>; rel="next"')
    links.append(f'<{base}?page={last}&per_page={per_page}>; rel="last"')
    response.headers["X-Total-Count"] = str(total)
    response.headers["Link"] = ", ".join(links)
    return UserList(users=[auth_user(row) for row in rows])


@router.post("/users", response_model=AuthUser, responses=ERRORS)
async def create_user(request: Request, body: UserAttributes, _: Admin) -> AuthUser:
    """A new user: with or without a password, confirmed only with ``email_confirm``."""
    if body.email is None:
        raise GoTrueError(400, "validation_failed", "Creating a user needs an email")
    changes = await _changes(request, body)
    async with system_transaction(request) as conn:
        try:
            user = await service.create_user(
                conn, body.email, changes.pop("encrypted_password", None),
                body.user_metadata or {}, confirmed=bool(body.email_confirm),
                app_metadata=body.app_metadata,
            )  # fmt: skip
        except service.EmailTaken:
            raise EMAIL_EXISTS from None
        if "banned_until" in changes:
            user = await service.update_user(conn, user["id"], banned_until=changes["banned_until"])
    return auth_user(user)


@router.get("/users/{user_id}", response_model=AuthUser, responses=ERRORS)
async def get_user(request: Request, user_id: str, _: Admin) -> AuthUser:
    async with system_transaction(request) as conn:
        user = await service.find_user(conn, _user_id(user_id))
    if user is None:
        raise USER_NOT_FOUND
    return auth_user(user)


@router.put("/users/{user_id}", response_model=AuthUser, responses=ERRORS)
async def update_user(request: Request, user_id: str, body: UserAttributes, _: Admin) -> AuthUser:
    """Change a user: the email at once (no confirmation mail), the password, the
    confirmation, the metadata (merged), a ban (``ban_duration``; a banned user's
    refresh tokens stop working at once)."""
    uid = _user_id(user_id)
    changes = await _changes(request, body)
    if body.email is not None:
        changes["email"] = body.email
    async with system_transaction(request) as conn:
        if await service.find_user(conn, uid) is None:
            raise USER_NOT_FOUND
        try:
            user = await service.update_user(conn, uid, **changes)
        except service.EmailTaken:
            raise EMAIL_EXISTS from None
    return auth_user(user)


@router.delete("/users/{user_id}", responses=ERRORS)
async def delete_user(
    request: Request,
    user_id: str,
    _: Admin,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:
    """Delete a user, with their membership, sessions and tokens (``should_soft_delete``:
    keep the row, marked deleted). The owner of a company hands it to another of its
    owners; with none, the delete is refused (422) naming the company."""
    uid = _user_id(user_id)
    soft = bool((body or {}).get("should_soft_delete"))
    async with system_transaction(request) as conn:
        user = await service.find_user(conn, uid)
        if user is None:
            raise USER_NOT_FOUND
        await _hand_over_companies(conn, uid, user["email"])
        # The mail asked about the address goes with the account (an ask names an
        # address, not always the account).
        await conn.execute(service.DELETE_MAIL_ASKS, {"email": user["email"]})
        if soft:
            await conn.execute(service.SOFT_DELETE_USER, {"id": uid})
        else:
            await conn.execute("DELETE FROM auth.users WHERE id = %(id)s", {"id": uid})
    return {}


async def _hand_over_companies(conn: TenantConnection, user_id: UUID, email: str) -> None:
    """Give each company this user owns to another owner of it; GoTrueError(422) if one
    has none."""
    owned = await (await conn.execute(service.OWNED_COMPANIES, {"id": user_id})).fetchall()
    for company in owned:
        if company["successor"] is not None:
            await conn.execute(
                "UPDATE public.companies SET owner_id = %(successor)s WHERE id = %(company)s",
                {"successor": company["successor"], "company": company["id"]},
            )
            continue
        what = (
            f"the only member of company {company['name']!r} ({company['id']}); delete the "
            "company first"
            if company["members"] == 1
            else f"the last owner of company {company['name']!r} ({company['id']}); give "
            "another member the owner role first"
        )
        raise GoTrueError(422, "last_owner", f"{email} is {what}")


@router.post("/generate_link", responses=ERRORS)
async def generate_link(
    request: Request,
    body: LinkRequest,
    _: Admin,
    redirect_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """A verification link (and code) as the mail would carry it, returned instead of
    sent: ``signup`` (creates the user, with ``password``), ``invite`` (creates them
    without), ``magiclink``, ``recovery``, ``email_change_current``/``_new`` (with
    ``new_email``)."""
    settings = settings_of(request)
    redirect = flows.allowed_redirect(settings, redirect_to or body.redirect_to)
    if body.type.startswith("email_change") and body.new_email is None:
        raise GoTrueError(400, "validation_failed", f"{body.type} needs new_email")
    password_hash = None
    if body.type == "signup":
        if body.password is None:
            raise GoTrueError(400, "validation_failed", "A signup link needs a password")
        flows.check_password(settings, body.password)
        password_hash = await hash_password(body.password)
    async with system_transaction(request) as conn:
        user = await service.find_any_user_by_email(conn, body.email)
        if body.type in ("signup", "invite"):
            if user is not None:
                raise EMAIL_EXISTS
            user = await service.create_user(
                conn, body.email, password_hash, body.data or {}, confirmed=False
            )
        elif user is None:
            raise USER_NOT_FOUND
        kind = "email_change" if body.type.startswith("email_change") else body.type
        recipient = body.new_email if kind == "email_change" else user["email"]
        assert recipient is not None
        if kind == "email_change" and await service.find_any_user_by_email(conn, recipient):
            raise EMAIL_EXISTS
        issued = await onetime.issue(
            conn, keys_of(request).jwt_secret, kind, user["id"], recipient, redirect,
            settings.auth_token_lifetime_s,
        )  # fmt: skip
    link = flows.verify_link(request, kind, issued.link_token, redirect)
    return {
        **auth_user(user).model_dump(mode="json"),
        "action_link": link,
        "email_otp": issued.code,
        "hashed_token": issued.link_token,
        "redirect_to": redirect,
        "verification_type": body.type,
    }
