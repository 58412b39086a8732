"""The five routes every /v1 resource has: create, read, update (PATCH), delete, list.

A domain describes its resource (table, schemas, who may write, how lists filter) and
``add_crud_routes`` adds the routes to the domain's router. Rows are reached through
``access_row``: a row that does not exist and a row of another company are the same 404.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint signatures
# built below at runtime, and their types are the resource's schemas.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Response

from syntera.api.deps import Manager, Member, Tenant
from syntera.api.errors import field_error, not_found
from syntera.api.pagination import Page, PageRequest, page_from, page_request
from syntera.api.schemas import Input, Output
from syntera.db.tables import Filter, Row, TenantTable

M = TypeVar("M", bound=Output)


@dataclass(frozen=True)
class Resource(Generic[M]):
    """A tenant table as the API shows it."""

    table: TenantTable
    model: type[M]
    singular: str
    create: type[Input] = Input
    update: type[Input] = Input

    def out(self, row: Row) -> M:
        return self.model.model_validate(row)

    @property
    def label(self) -> str:
        return self.singular.capitalize()


RowId = Annotated[UUID, Path(description="The row's id.")]


async def access_row(tenant: Tenant, resource: Resource[Any], row_id: UUID) -> Row:
    """The row of the caller's company, or 404 (also for another company's row)."""
    row = await resource.table.fetch(tenant.conn, tenant.company_id, row_id)
    if row is None:
        raise not_found(resource.label)
    return row


async def check_reference(
    tenant: Tenant, resource: Resource[Any], row_id: UUID | None, field: str
) -> None:
    """``row_id``, if given, must name a row of the caller's company: a reference into
    another store (a MongoDB document naming a PostgreSQL row) that no foreign key checks.
    422 naming ``field`` otherwise."""
    if row_id is None:
        return
    if await resource.table.fetch(tenant.conn, tenant.company_id, row_id) is None:
        raise field_error(field, "refers to a row that does not exist")


async def update_row(
    tenant: Tenant, resource: Resource[Any], row_id: UUID, changes: dict[str, Any]
) -> Row:
    row = await resource.table.update(tenant.conn, tenant.company_id, row_id, changes)
    if row is None:
        raise not_found(resource.label)
    return row


async def delete_row(tenant: Tenant, resource: Resource[Any], row_id: UUID) -> Row:
    """Delete the row of the caller's company; the row as it was, or 404."""
    row = await resource.table.delete(tenant.conn, tenant.company_id, row_id)
    if row is None:
        raise not_found(resource.label)
    return row


async def list_rows(
    tenant: Tenant, resource: Resource[M], paging: PageRequest, filters: list[Filter]
) -> Page[M]:
    listing = await resource.table.list(
        tenant.conn,
        tenant.company_id,
        filters=filters,
        limit=paging.limit,
        after=paging.after,
        offset=paging.offset,
        exact_count=paging.exact_count,
    )
    return page_from(listing, paging, resource.out, resource.table.time_column)


async def no_filters() -> list[Filter]:
    return []


def add_crud_routes(
    router: APIRouter,
    resource: Resource[M],
    *,
    managers_write: bool = False,
    managers_read: bool = False,
    filters: Callable[..., Awaitable[list[Filter]]] = no_filters,
    creation_values: Callable[[Tenant], dict[str, Any]] | None = None,
    routes: tuple[str, ...] = ("create", "read", "update", "delete", "list"),
    changed: Callable[[Tenant, Row], None] | None = None,
) -> None:
    """Add the resource's routes to ``router``. ``managers_write`` (``managers_read``):
    only owners and admins create, change and delete (read); the database's policies
    say the same, this makes the answer a 403 rather than a 404 or an empty list.
    ``changed`` is told of every row updated or deleted (to invalidate caches)."""
    Writer = Manager if managers_write else Member
    Reader = Manager if managers_read else Member
    model, create_model, update_model = resource.model, resource.create, resource.update
    name = resource.singular
    Filters = Annotated[list[Filter], Depends(filters)]
    Paging = Annotated[PageRequest, Depends(page_request)]

    async def create(tenant: Writer, body: create_model) -> model:  # type: ignore[valid-type]
        values = body.changes()  # type: ignore[attr-defined]
        writer: Tenant = tenant
        if creation_values is not None:
            values.update(creation_values(writer))
        return resource.out(await resource.table.insert(writer.conn, writer.company_id, values))

    async def read(tenant: Reader, row_id: RowId) -> model:  # type: ignore[valid-type]
        return resource.out(await access_row(tenant, resource, row_id))

    async def update(tenant: Writer, row_id: RowId, body: update_model) -> model:  # type: ignore[valid-type]
        changes = body.changes()  # type: ignore[attr-defined]
        row = await update_row(tenant, resource, row_id, changes)
        if changed is not None:
            changed(tenant, row)
        return resource.out(row)

    async def delete(tenant: Writer, row_id: RowId) -> Response:  # type: ignore[valid-type]
        row = await delete_row(tenant, resource, row_id)
        if changed is not None:
            changed(tenant, row)
        return Response(status_code=204)

    async def list_(tenant: Reader, paging: Paging, where: Filters) -> Page[model]:  # type: ignore[valid-type]
        return await list_rows(tenant, resource, paging, where)

    documented: dict[str, tuple[Callable[..., Any], str, str, int, str]] = {
        "create": (create, "POST", "", 201, f"Create a {name}."),
        "read": (read, "GET", "/{row_id}", 200, f"One {name} of your company."),
        "update": (update, "PATCH", "/{row_id}", 200, f"Change the fields sent of a {name}."),
        "delete": (delete, "DELETE", "/{row_id}", 204, f"Delete a {name}."),
        "list": (list_, "GET", "", 200, f"Your company's {name}s, newest first, paginated."),
    }
    for route in routes:
        endpoint, method, path, status, summary = documented[route]
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            status_code=status,
            summary=summary,
            operation_id=f"{route}_{name.replace(' ', '_')}",
            response_model=None if route == "delete" else endpoint.__annotations__["return"],
        )
