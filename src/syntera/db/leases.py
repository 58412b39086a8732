"""Leases on queue rows: how a worker knows a job is still its own.

A job (a document to process, a workflow execution to run) is a row claimed under a
lease (``lease_token``, ``lease_expires_at``). Each later change first re-reads the row
under its token with ``lock_leased``: a job deleted, sent back, or taken over after the
lease ran out raises ``LeaseLost``, and the worker writes nothing more.
"""

from __future__ import annotations

from typing import Any

from syntera.db.postgres import TenantConnection


class LeaseLost(Exception):
    """The job is no longer this worker's: deleted, sent back, or taken after its lease."""


async def lock_leased(
    conn: TenantConnection, statement: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Run ``statement`` (a ``SELECT … WHERE … lease_token = %(token)s FOR UPDATE``) and
    return the job's row while the lease is still this worker's; LeaseLost otherwise."""
    row = await (await conn.execute(statement, params)).fetchone()
    if row is None:
        raise LeaseLost
    return dict(row)
