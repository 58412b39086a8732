"""Every error answer of /v1, from one place, as ``application/problem+json`` (RFC 9457).

Database errors are translated by SQLSTATE: a CHECK or NOT NULL violation is a 422 naming
the field, a unique violation a 409, a reference to a row the caller cannot see a 422
naming the field, a privilege or policy violation a 403. A row that does not exist and a
row of another company are the same 404. Nothing the client sends produces a 500.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import psycopg
from bson.errors import InvalidDocument
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import errors as pg
from pydantic import BaseModel
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException

from syntera.errors import (
    Conflict,
    Forbidden,
    InvalidField,
    NotFound,
    RateLimited,
    SynteraError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDetails(BaseModel):
    """An error answer (RFC 9457), served as application/problem+json."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetails, "description": description}
    for status, description in {
        400: "Malformed request (for example, invalid JSON)",
        401: "Missing or invalid bearer token",
        403: "Your role does not allow this, or you belong to no company",
        404: "No such row in your company",
        409: "Conflicts with an existing row",
        413: "Request body too large",
        422: "A field is invalid (named in `errors`)",
        429: "Rate limit reached; retry after `Retry-After` seconds",
        503: "A store is unavailable or the statement timed out; retry",
    }.items()
}


def use_problem_media_type(openapi: dict[str, Any]) -> dict[str, Any]:
    """Document error answers of /v1 under the media type they are served with."""
    for path, operations in openapi.get("paths", {}).items():
        if not path.startswith("/v1"):
            continue
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status.startswith(("4", "5")) and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
    return openapi


class Problem(Exception):
    """An error answer: raise it anywhere below a route."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers

    def response(self, request: Request) -> JSONResponse:
        if request.url.path.startswith(GOTRUE_PREFIX):
            return self._gotrue_response()
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "instance": request.url.path,
        }
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, self.status, headers=self.headers, media_type=PROBLEM_JSON)

    def _gotrue_response(self) -> JSONResponse:
        """The same error in Supabase Auth's shape, for clients of /auth/v1."""
        status = 400 if self.status == 422 else self.status
        body = {
            "code": status,
            "error_code": GOTRUE_ERROR_CODES.get(status, "unexpected_failure"),
            "msg": self.detail or self.title,
        }
        return JSONResponse(body, status, headers=self.headers)


GOTRUE_PREFIX = "/auth/"
GOTRUE_ERROR_CODES = {
    400: "validation_failed",
    401: "no_authorization",
    403: "not_admin",
    404: "not_found",
    413: "request_too_large",
    429: "over_request_rate_limit",
    503: "unexpected_failure",
}


def field_problem(field: str, message: str) -> Problem:
    """A request that is well-formed but whose ``field`` is not acceptable."""
    return Problem(
        422, "Unprocessable Content", f"{field}: {message}", errors=[_error(field, message)]
    )


# What each kind of service error is answered with.
STATUS_OF: dict[type[SynteraError], int] = {
    NotFound: 404,
    InvalidField: 422,
    Conflict: 409,
    Forbidden: 403,
    Unauthorized: 401,
    UnsupportedMediaType: 415,
    TooLarge: 413,
    RateLimited: 429,
    Unavailable: 503,
}


def problem_from_error(error: SynteraError) -> Problem:
    """The answer to a service's error."""
    status = next((code for kind, code in STATUS_OF.items() if isinstance(error, kind)), 422)
    headers: dict[str, str] | None = None
    match error:
        case InvalidField():
            return field_problem(error.field, error.message)
        case Unauthorized():
            headers = {"WWW-Authenticate": error.scheme}
        case RateLimited():
            headers = {"Retry-After": str(error.retry_after_s)}
        case Unavailable() if error.retry_after_s is not None:
            headers = {"Retry-After": str(error.retry_after_s)}
    return Problem(status, _title(status), error.detail, headers=headers)


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _field_of(diag: psycopg.errors.Diagnostic) -> str:
    """The client-facing field a database error is about. Constraint names follow
    PostgreSQL's defaults, <table>_<columns>_check (or _fkey, _key)."""
    if diag.column_name:
        return diag.column_name
    name = diag.constraint_name or ""
    table = diag.table_name or ""
    columns = name.removeprefix(f"{table}_") if table and name.startswith(table) else name
    columns = re.sub(r"_(check|fkey|key|pkey)$", "", columns)
    # Composite tenant references are named company_id_<column>: the field is the column.
    return columns.removeprefix("company_id_") or "body"


def problem_from_database(error: psycopg.Error) -> Problem:
    """The client's answer to a database error raised while serving its request."""
    diag = error.diag
    if isinstance(error, pg.CheckViolation | pg.NotNullViolation):
        field = _field_of(diag)
        return field_problem(field, "value is not allowed")
    if isinstance(error, pg.UniqueViolation):
        field = _field_of(diag)
        return Problem(
            409, "Conflict", f"{field}: a row with this value exists",
            errors=[_error(field, "already exists")],
        )  # fmt: skip
    if isinstance(error, pg.ForeignKeyViolation):
        field = _field_of(diag)
        return field_problem(field, "refers to a row that does not exist")
    if isinstance(error, pg.InsufficientPrivilege):
        return Problem(403, "Forbidden", diag.message_primary or "not allowed")
    if isinstance(error, pg.NoDataFound):
        return Problem(404, "Not Found", diag.message_primary or "not found")
    if isinstance(error, pg.QueryCanceled):
        return Problem(503, "Service Unavailable", "the statement timed out; retry later")
    if isinstance(error, pg.DataError):  # bad number, date, text encoding, out of range
        return Problem(422, "Unprocessable Content", diag.message_primary or "invalid value")
    if isinstance(error, pg.SerializationFailure | pg.DeadlockDetected):
        return Problem(503, "Service Unavailable", "a concurrent change conflicted; retry")
    if isinstance(error, psycopg.OperationalError):
        return Problem(503, "Service Unavailable", "the database is unavailable")
    log.error("unexpected database error", exc_info=error)
    return Problem(500, "Internal Server Error")


def _location(loc: tuple[Any, ...]) -> str:
    """The field as the client names it: without the leading location kind (a body
    field may itself be called "query")."""
    if not loc:
        return "body"
    parts = loc[1:] if loc[0] in ("body", "query", "path", "header", "cookie") else loc
    return ".".join(str(part) for part in parts) or str(loc[0])


def problem_from_validation(error: RequestValidationError) -> Problem:
    """Malformed JSON is a 400; anything else the schema rejects is a 422 per field."""
    details = list(error.errors())
    if any(detail.get("type") == "json_invalid" for detail in details):
        return Problem(400, "Bad Request", "the request body is not valid JSON")
    errors = [_error(_location(tuple(d.get("loc", ()))), str(d.get("msg"))) for d in details]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return Problem(422, "Unprocessable Content", summary, errors=errors)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error of the application through problem+json."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, error: Problem) -> JSONResponse:
        return error.response(request)

    @app.exception_handler(SynteraError)
    async def on_service_error(request: Request, error: SynteraError) -> JSONResponse:
        return problem_from_error(error).response(request)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return problem_from_validation(error).response(request)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        problem = Problem(error.status_code, _title(error.status_code), str(error.detail))
        problem.headers = dict(error.headers or {})
        return problem.response(request)

    @app.exception_handler(psycopg.Error)
    async def on_database(request: Request, error: psycopg.Error) -> JSONResponse:
        return problem_from_database(error).response(request)

    @app.exception_handler(ConnectionFailure)
    async def on_mongo_unavailable(request: Request, error: ConnectionFailure) -> JSONResponse:
        log.warning("MongoDB unavailable on %s: %s", request.url.path, error)
        return Problem(503, "Service Unavailable", "MongoDB is unavailable; retry").response(
            request
        )

    @app.exception_handler(InvalidDocument)
    async def on_unstorable(request: Request, error: InvalidDocument) -> JSONResponse:
        return Problem(422, "Unprocessable Content", f"cannot be stored: {error}").response(request)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return Problem(500, "Internal Server Error").response(request)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
