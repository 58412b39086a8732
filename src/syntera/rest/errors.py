"""PostgREST's errors: a JSON object ``{code, message, details, hint}`` and its status.

The codes and texts are PostgREST's own (``PGRST1xx`` for requests it cannot parse,
``PGRST2xx`` for what the schema cache does not hold), and a database error carries its
SQLSTATE as the code with the status PostgREST maps it to, so clients that read the
``code`` or the ``details`` (postgrest-py's ``maybe_single``) behave as against PostgREST.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

JSON_UTF8 = b"application/json; charset=utf-8"


class RestError(Exception):
    """An error answer of /rest/v1: raise it anywhere below the handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        hint: Any = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = headers or []

    def body(self) -> bytes:
        """The answer's JSON body."""
        return orjson.dumps(
            {"code": self.code, "message": self.message, "details": self.details,
             "hint": self.hint}
        )  # fmt: skip


def parse_error(message: str, details: str) -> RestError:
    """400 PGRST100: a query parameter that does not parse."""
    return RestError(400, "PGRST100", message, details)


def range_error(details: str) -> RestError:
    """416 PGRST103: a range that cannot be served."""
    return RestError(416, "PGRST103", "Requested range not satisfiable", details)


def unacceptable_schema(schema: str, exposed: list[str]) -> RestError:
    """406 PGRST106: Accept-Profile or Content-Profile names a schema not exposed."""
    return RestError(
        406, "PGRST106", f"Invalid schema: {schema}", None,
        "Only the following schemas are exposed: " + ", ".join(exposed),
    )  # fmt: skip


def media_type_error(types: list[str]) -> RestError:
    """406 PGRST107: nothing the client accepts can be produced."""
    return RestError(
        406, "PGRST107", "None of these media types are available: " + ", ".join(types)
    )


def singular_error(rows: int) -> RestError:
    """406 PGRST116: one object was asked for (``vnd.pgrst.object``) and the result has
    ``rows`` rows — PostgREST 12's exact text, which postgrest-py's ``maybe_single``
    reads."""
    return RestError(
        406, "PGRST116", "JSON object requested, multiple (or no) rows returned",
        f"The result contains {rows} rows",
    )  # fmt: skip


def column_not_found(relation: str, column: str) -> RestError:
    """A column the relation does not have, as PostgreSQL words it (42703, 400)."""
    return RestError(400, "42703", f"column {relation}.{column} does not exist")


def table_not_found(schema: str, name: str, hint: str | None) -> RestError:
    """404 PGRST205: no such table or view in the schema cache."""
    return RestError(
        404, "PGRST205", f"Could not find the table '{schema}.{name}' in the schema cache",
        None, hint,
    )  # fmt: skip


def sqlstate_status(code: str, message: str, authenticated: bool) -> int:
    """The HTTP status PostgREST answers a database error with (its ``mapSQLtoHTTP``)."""
    exact = {
        "23503": 409, "23505": 409, "25006": 405, "42P01": 404, "42P17": 500, "53400": 500,
        "57P01": 503, "P0001": 400,
    }  # fmt: skip
    if code in exact:
        return exact[code]
    if code == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if code == "22023":
        return 401 if message.startswith("role") and message.endswith("does not exist") else 400
    if code == "42883":
        return 406 if message.startswith("function xmlagg(") else 404
    if code == "42501":
        return 403 if authenticated else 401
    if code.startswith("PT") and code[2:].isdigit():
        return int(code[2:])
    prefixes = {
        "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500,
        "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500,
        "57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500,
    }  # fmt: skip
    return prefixes.get(code[:2], 400)


def from_database(error: psycopg.Error, authenticated: bool) -> RestError:
    """The answer to a database error: its SQLSTATE, message, detail and hint, with
    PostgREST's status (``authenticated``: the request carried a token, so a privilege
    error is 403, not 401)."""
    diag = error.diag
    if isinstance(error, psycopg.OperationalError) and diag.sqlstate is None:
        return RestError(503, "PGRST000", "Database connection error. Retrying the connection.")
    code = diag.sqlstate or "PGRSTX00"
    message = diag.message_primary or str(error)
    status = sqlstate_status(code, message, authenticated)
    headers = [(b"www-authenticate", b"Bearer")] if status == 401 else []
    return RestError(status, code, message, diag.message_detail, diag.message_hint, headers)
