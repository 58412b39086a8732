"""A contact's data in one JSON document (the right of access).

The PostgreSQL parts (the contact, their deals, analytics events, calls) are read in the
request's transaction, a page at a time; the conversations and their messages are then
streamed from MongoDB in batches, so a contact with 100,000 messages never needs them in
memory at once. Every object is as the REST API returns it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel

from syntera.analytics.service import EVENTS
from syntera.calls.service import CALLS, RECORDINGS
from syntera.crm.service import CONTACTS, DEALS
from syntera.db.tables import Filter
from syntera.kit.resources import Resource, access_row
from syntera.purges.registry import StoredElsewhere
from syntera.unit_of_work import TenantTransaction

PAGE = 500

# The parts read from PostgreSQL, in the order they appear in the document.
RELATED: tuple[tuple[str, Resource[Any]], ...] = (
    ("deals", DEALS),
    ("analytics_events", EVENTS),
    ("call_history", CALLS),
    ("call_recordings", RECORDINGS),
)


@dataclass(frozen=True)
class ContactRecords:
    """What PostgreSQL holds about a contact (read before the answer starts)."""

    company_id: UUID
    contact: BaseModel
    related: dict[str, list[BaseModel]]


async def read_records(tx: TenantTransaction, contact_id: UUID) -> ContactRecords:
    """The contact and every row naming them; 404 for another company's contact."""
    contact = CONTACTS.out(await access_row(tx, CONTACTS, contact_id))
    related: dict[str, list[BaseModel]] = {}
    for name, resource in RELATED:
        rows: list[BaseModel] = []
        after: tuple[datetime, UUID] | None = None
        while True:
            listing = await resource.table.list(
                tx.conn, tx.company_id, filters=[Filter.equals("contact_id", contact_id)],
                limit=PAGE, after=after,
            )  # fmt: skip
            rows += [resource.out(row) for row in listing.rows]
            if not listing.has_more or not listing.rows:
                break
            last = listing.rows[-1]
            after = (last[resource.table.time_column], last["id"])
        related[name] = rows
    return ContactRecords(tx.company_id, contact, related)


def _json(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


async def export_document(
    records: ContactRecords, elsewhere: StoredElsewhere, contact_id: UUID
) -> AsyncIterator[bytes]:
    """The export as JSON text, piece by piece: the PostgreSQL records, then each part
    that another store holds (``syntera.purges.registry``), as an array of its own."""
    yield b'{"exported_at":' + orjson.dumps(datetime.now().astimezone().isoformat())
    yield b',"contact":' + _json(records.contact)
    for name, rows in records.related.items():
        yield b',"' + name.encode() + b'":[' + b",".join(_json(row) for row in rows) + b"]"
    for name, part in elsewhere.export.items():
        yield b',"' + name.encode() + b'":['
        async for piece in part(records.company_id, contact_id):
            yield piece
        yield b"]"
    yield b"}"
