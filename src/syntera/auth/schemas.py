"""Request and response bodies of /auth/v1, shaped as Supabase Auth (GoTrue) shapes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PASSWORD_LENGTH = 256


class Credentials(BaseModel):
    """Email and password (extra GoTrue fields such as gotrue_meta_security are ignored)."""

    model_config = ConfigDict(extra="ignore")

    email: str = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class SignUp(Credentials):
    data: dict[str, Any] = Field(default_factory=dict, description="User metadata.")


class RefreshGrant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    refresh_token: str = Field(min_length=1, max_length=512)


class AuthUser(BaseModel):
    """A user as GoTrue returns it."""

    id: str
    aud: str = "authenticated"
    role: str = "authenticated"
    email: str | None
    email_confirmed_at: datetime | None
    phone: str = ""
    confirmed_at: datetime | None
    last_sign_in_at: datetime | None
    confirmation_sent_at: datetime | None = None
    new_email: str | None = None
    email_change_sent_at: datetime | None = None
    banned_until: datetime | None = None
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    identities: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime | None
    is_anonymous: bool = False


class Session(BaseModel):
    """A session as GoTrue returns it from /signup and /token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    expires_at: int
    refresh_token: str
    user: AuthUser


class AuthError(BaseModel):
    """GoTrue's error shape (``code`` is the HTTP status, ``error_code`` the reason)."""

    code: int
    error_code: str
    msg: str
    weak_password: dict[str, list[str]] | None = Field(
        default=None, description='Why a password was refused: {"reasons": ["length"]}.'
    )
