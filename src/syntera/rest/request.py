"""What a /rest/v1 request asks, read from its path and headers: the schema (its
profile), the relation or function, the caller, the ``Prefer`` preferences, the media
type to answer with and the range of rows."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote

from syntera.rest.errors import RestError, media_type_error, range_error, unacceptable_schema
from syntera.rest.grammar import MAX_DIGITS
from syntera.tenancy import Principal

JSON = "application/json"
OBJECT = "application/vnd.pgrst.object+json"
OBJECT_UTF8 = b"application/vnd.pgrst.object+json; charset=utf-8"
CSV = "text/csv"
MediaType = Literal["application/json", "application/vnd.pgrst.object+json", "text/csv"]

# Bounds of at most MAX_DIGITS digits (bigint); anything else is unreadable, and ignored.
_RANGE = re.compile(r"^(?:items=)?\s*([0-9]{1,18})\s*-\s*([0-9]{0,18})\s*$")


PREFERENCES: dict[str, tuple[str, ...]] = {
    "resolution": ("merge-duplicates", "ignore-duplicates"),
    "missing": ("default", "null"),
    "return": ("representation", "minimal", "headers-only"),
    "params": ("single-object",),
    "count": ("exact", "planned", "estimated"),
    "tx": ("commit", "rollback"),
    "handling": ("strict", "lenient"),
}
# The order PostgREST lists applied preferences in (Preference-Applied).
APPLIED_ORDER = ("resolution", "missing", "return", "params", "count", "tx", "handling",
                 "timezone", "max-affected")  # fmt: skip


@dataclass(frozen=True)
class Preferences:
    """The ``Prefer`` headers, as PostgREST reads them: comma-separated, the first of a
    kind wins, anything unknown is kept in ``invalid`` (refused with ``handling=strict``)."""

    count: Literal["exact", "planned", "estimated"] | None = None
    return_: Literal["minimal", "headers-only", "representation"] | None = None
    resolution: Literal["merge-duplicates", "ignore-duplicates"] | None = None
    missing: Literal["default", "null"] | None = None
    tx: Literal["commit", "rollback"] | None = None
    handling: Literal["strict", "lenient"] | None = None
    max_affected: int | None = None
    params: str | None = None
    timezone: str | None = None
    invalid: tuple[str, ...] = ()

    @classmethod
    def parse(cls, values: list[str]) -> Preferences:
        chosen: dict[str, str] = {}
        invalid: list[str] = []
        for value in values:
            for part in value.split(","):
                preference = part.strip()
                if not preference:
                    continue
                name, _, setting = preference.partition("=")
                known = setting in PREFERENCES.get(name, ())
                if (
                    known
                    or (name == "max-affected" and _a_count(setting))
                    or (name == "timezone" and setting in time_zones())
                ):
                    chosen.setdefault(name, setting)
                else:
                    invalid.append(preference)
        affected = chosen.get("max-affected")
        return cls(
            chosen.get("count"),  # type: ignore[arg-type]
            chosen.get("return"),  # type: ignore[arg-type]
            chosen.get("resolution"),  # type: ignore[arg-type]
            chosen.get("missing"),  # type: ignore[arg-type]
            chosen.get("tx"),  # type: ignore[arg-type]
            chosen.get("handling"),  # type: ignore[arg-type]
            int(affected) if affected else None,
            chosen.get("params"),
            chosen.get("timezone"),
            tuple(invalid),
        )

    def check(self) -> None:
        """400 PGRST122 for unknown preferences under ``handling=strict``."""
        if self.handling == "strict" and self.invalid:
            raise RestError(
                400, "PGRST122", "Invalid preferences given with handling=strict",
                "Invalid preferences: " + ", ".join(self.invalid),
            )  # fmt: skip


NO_PREFERENCES = Preferences()


def applied_header(applied: list[str]) -> bytes:
    """Preference-Applied's value: the applied preferences in PostgREST's order."""

    def rank(preference: str) -> int:
        name = preference.partition("=")[0]
        return APPLIED_ORDER.index(name) if name in APPLIED_ORDER else len(APPLIED_ORDER)

    return ", ".join(sorted(dict.fromkeys(applied), key=rank)).encode()


@dataclass
class RestRequest:
    """One request to /rest/v1, its headers read (its query string is parsed by the
    handler that needs it: ``syntera.rest.grammar.parse_query``)."""

    method: str
    path: str  # below /rest/v1, e.g. "/contacts" or "/rpc/f"
    query_string: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    schema: str
    name: str  # the relation (or, with ``rpc``, the function)
    rpc: bool
    principal: Principal
    authenticated: bool  # a token was sent (a privilege error is then 403, not 401)
    preferences: Preferences
    applied: list[str] = field(default_factory=list)  # for Preference-Applied

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def headers_of(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a dict of lower-case names (repeated ones joined, as HTTP allows)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    """The IANA time zone names ``Prefer: timezone=`` may name (PostgreSQL's own names;
    read once, on first use)."""
    return frozenset(zoneinfo.available_timezones())


def _a_count(text: str) -> bool:
    """ASCII digits that fit a bigint."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS


def target_of(path: str) -> tuple[str, bool]:
    """``/contacts`` -> ("contacts", False); ``/rpc/f`` -> ("f", True); 404 PGRST125 for
    anything else."""
    parts = path.strip("/").split("/")
    if "%" in path:
        parts = [unquote(part) for part in parts]
    if len(parts) == 1 and parts[0]:
        return parts[0], False
    if len(parts) == 2 and parts[0] == "rpc" and parts[1]:
        return parts[1], True
    raise RestError(404, "PGRST125", "Invalid path specified in request URL")


def schema_of(headers: dict[str, str], method: str, exposed: list[str]) -> str:
    """The schema a request names: Accept-Profile (reads, OPTIONS) or Content-Profile (writes),
    the first exposed schema by default; 406 PGRST106 for one not exposed."""
    name = "accept-profile" if method in ("GET", "HEAD", "OPTIONS") else "content-profile"
    wanted = headers.get(name)
    if wanted is None:
        return exposed[0]
    wanted = wanted.strip()
    if wanted not in exposed:
        raise unacceptable_schema(wanted, exposed)
    return wanted


def media_type_of(accept: str | None, *, csv: bool = True) -> MediaType:
    """The media type to answer with, by the client's Accept (its order and q-values);
    406 PGRST107 if none can be produced."""
    if not accept:
        return "application/json"
    offered: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept.split(",")):
        kind, *params = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if kind:
            offered.append((-quality, index, kind.lower()))
    for quality, _, kind in sorted(offered):
        if quality == 0:
            continue
        if kind in ("application/json", "application/*", "*/*"):
            return "application/json"
        if kind in (OBJECT, "application/vnd.pgrst.object"):
            return "application/vnd.pgrst.object+json"
        if kind == CSV and csv:
            return "text/csv"
    raise media_type_error([kind for _, _, kind in offered] or [accept])


@dataclass(frozen=True)
class RowRange:
    """The rows asked for: ``offset`` and at most ``limit`` (None: no bound)."""

    offset: int
    limit: int | None


def row_range(
    header: str | None, limit: int | None, offset: int | None, max_rows: int | None
) -> RowRange:
    """The Range header (``0-9``, ``items=10-``; anything unreadable is ignored, as
    PostgREST does) intersected with ``limit``/``offset`` and bounded by max-rows."""
    lower, upper = 0, None
    if header:
        match = _RANGE.match(header)
        if match:
            lower = int(match.group(1))
            upper = int(match.group(2)) if match.group(2) else None
            if upper is not None and lower > upper:
                raise range_error(
                    "The lower boundary must be lower than or equal to the upper boundary "
                    "in the Range header."
                )
    start = lower + (offset or 0)
    end = upper
    if limit is not None:
        end = start + limit - 1 if end is None else min(end, start + limit - 1)
    count = None if end is None else max(end - start + 1, 0)
    if max_rows is not None:
        count = max_rows if count is None else min(count, max_rows)
    return RowRange(start, count)
