"""Bounded lists: ``limit``, an opaque keyset ``cursor`` (or ``offset``), optional total.

A cursor names the last row of a page by its sort key (time, id). The next page starts
strictly after it, so rows inserted meanwhile never shift a page: every row that existed
when paging began is returned exactly once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import orjson
from pydantic import BaseModel, Field

from syntera.db.tables import Listing
from syntera.errors import field_error
from syntera.kit.schemas import storable_time

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    data: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )
    total: int | None = Field(
        default=None, description="Number of matching rows, when asked with `count=exact`."
    )


@dataclass(frozen=True)
class Cursor:
    """The sort key of the last row of a page."""

    at: datetime
    id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.at.isoformat(), self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            at, row_id = orjson.loads(raw)
            return cls(storable_time(datetime.fromisoformat(at)), str(row_id))
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as error:
            raise field_error("cursor", "not a cursor returned by this API") from error

    @classmethod
    def after(cls, row: dict[str, Any], time_column: str, id_key: str = "id") -> Cursor:
        return cls(row[time_column], str(row[id_key]))


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: Cursor | None
    offset: int
    exact_count: bool

    @property
    def after(self) -> tuple[datetime, UUID] | None:
        """The cursor as a PostgreSQL keyset (time, uuid)."""
        if self.cursor is None:
            return None
        try:
            return self.cursor.at, UUID(self.cursor.id)
        except ValueError as error:
            raise field_error("cursor", "not a cursor returned by this API") from error


def page_from(
    listing: Listing, request: PageRequest, convert: Callable[[dict[str, Any]], T], time_column: str
) -> Page[T]:
    """The API page of a table listing: rows converted, the cursor after the last one."""
    next_cursor = None
    if listing.has_more and listing.rows:
        next_cursor = Cursor.after(listing.rows[-1], time_column).encode()
    return Page[T](
        data=[convert(row) for row in listing.rows], next_cursor=next_cursor, total=listing.total
    )
