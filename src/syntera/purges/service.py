"""Erasing a contact, and reading a purge, as the company's owner or an admin."""

from __future__ import annotations

from uuid import UUID

from syntera.errors import not_found
from syntera.purges.schemas import Purge
from syntera.unit_of_work import TenantTransaction

ERASE_CONTACT = "SELECT public.erase_contact(%(company)s, %(contact)s) AS purge_id"
READ_PURGE = "SELECT * FROM public.company_purge(%(company)s, %(purge)s)"


async def erase_contact(tx: TenantTransaction, contact_id: UUID) -> Purge:
    """Delete the contact and what names them in PostgreSQL now, and queue the purge of
    their conversations; 404 for another company's contact or one already erased."""
    params = {"company": tx.company_id, "contact": contact_id}
    row = await (await tx.conn.execute(ERASE_CONTACT, params)).fetchone()
    if row is None or row["purge_id"] is None:
        raise not_found("Contact")
    return await read_purge(tx, row["purge_id"])


async def read_purge(tx: TenantTransaction, purge_id: UUID) -> Purge:
    params = {"company": tx.company_id, "purge": purge_id}
    row = await (await tx.conn.execute(READ_PURGE, params)).fetchone()
    if row is None:
        raise not_found("Purge")
    return Purge.model_validate(row)
