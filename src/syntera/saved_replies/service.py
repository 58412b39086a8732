"""Saved replies: one table of the company's (public.saved_replies, migration 027), every
member's to create, change and delete; the database's policies keep each company's."""

from __future__ import annotations

from psycopg import sql

from syntera.db.tables import Filter
from syntera.kit.resources import Resource
from syntera.saved_replies import schemas

SAVED_REPLIES = Resource.of(
    "saved_replies",
    schemas.SavedReply,
    "saved reply",
    schemas.SavedReplyCreate,
    schemas.SavedReplyUpdate,
)


def shortcut_filters(prefix: str | None) -> list[Filter]:
    """The list's filter: shortcuts starting with ``prefix`` (what the member typed after
    "/"); ``prefix`` is validated as a shortcut, so it holds no LIKE wildcard but "_",
    which is escaped."""
    if prefix is None:
        return []
    pattern = prefix.replace("_", r"\_") + "%"
    return [Filter(sql.SQL("shortcut LIKE %(shortcut_prefix)s"), {"shortcut_prefix": pattern})]
