"""A tenant table as the API shows it, and the verbs that reach its rows.

Rows are reached through ``access_row``: a row that does not exist and a row of another
company are the same ``NotFound``, so nothing leaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from syntera.db.tables import Filter, Row, TenantTable
from syntera.errors import field_error, not_found
from syntera.kit.pagination import Page, PageRequest, page_from
from syntera.kit.schemas import Input, Output
from syntera.unit_of_work import TenantTransaction

M = TypeVar("M", bound=Output)


@dataclass(frozen=True)
class Resource(Generic[M]):
    """A tenant table as the API shows it."""

    table: TenantTable
    model: type[M]
    singular: str
    create: type[Input] = Input
    update: type[Input] = Input

    @classmethod
    def of(
        cls,
        table: str,
        model: type[M],
        singular: str,
        create: type[Input] = Input,
        update: type[Input] = Input,
        *,
        json_columns: frozenset[str] = frozenset(),
        time_column: str = "created_at",
        hidden_columns: tuple[str, ...] = (),
    ) -> Resource[M]:
        """The resource of ``public.<table>`` whose columns are ``model``'s fields (and
        ``hidden_columns``, read but never shown)."""
        columns = (*model.model_fields, *hidden_columns)
        return cls(
            TenantTable(table, columns, json_columns=json_columns, time_column=time_column),
            model, singular, create, update,
        )  # fmt: skip

    def out(self, row: Row) -> M:
        return self.model.model_validate(row)

    @property
    def label(self) -> str:
        return self.singular.capitalize()


def found(resource: Resource[Any], row: Row | None) -> Row:
    """``row``, or the resource's 404."""
    return _found(resource, row)


def _found(resource: Resource[Any], row: Row | None) -> Row:
    if row is None:
        raise not_found(resource.label)
    return row


async def access_row(tx: TenantTransaction, resource: Resource[Any], row_id: UUID) -> Row:
    """The row of the caller's company, or 404 (also for another company's row)."""
    return _found(resource, await resource.table.fetch(tx.conn, tx.company_id, row_id))


async def check_reference(
    tx: TenantTransaction, resource: Resource[Any], row_id: UUID | None, field: str
) -> None:
    """``row_id``, if given, must name a row of the caller's company: a reference into
    another store (a MongoDB document naming a PostgreSQL row) that no foreign key checks.
    422 naming ``field`` otherwise."""
    if row_id is None:
        return
    if await resource.table.fetch(tx.conn, tx.company_id, row_id) is None:
        raise field_error(field, "refers to a row that does not exist")


async def update_row(
    tx: TenantTransaction, resource: Resource[Any], row_id: UUID, changes: dict[str, Any]
) -> Row:
    return _found(resource, await resource.table.update(tx.conn, tx.company_id, row_id, changes))


async def delete_row(tx: TenantTransaction, resource: Resource[Any], row_id: UUID) -> Row:
    """Delete the row of the caller's company; the row as it was, or 404."""
    return _found(resource, await resource.table.delete(tx.conn, tx.company_id, row_id))


async def list_rows(
    tx: TenantTransaction, resource: Resource[M], paging: PageRequest, filters: list[Filter]
) -> Page[M]:
    listing = await resource.table.list(
        tx.conn,
        tx.company_id,
        filters=filters,
        limit=paging.limit,
        after=paging.after,
        offset=paging.offset,
        exact_count=paging.exact_count,
    )
    return page_from(listing, paging, resource.out, resource.table.time_column)


async def create_row(tx: TenantTransaction, resource: Resource[M], values: dict[str, Any]) -> Row:
    """Insert a row of the caller's company; the row as stored."""
    return await resource.table.insert(tx.conn, tx.company_id, values)
