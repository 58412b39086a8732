"""The five routes every /v1 resource has: create, read, update (PATCH), delete, list.

A domain describes its resource (``syntera.kit.resources.Resource``: table, schemas) and
``add_crud_routes`` adds the routes to the domain's router, saying who may write and how
lists filter. Rows are reached through ``access_row``: a row that does not exist and a
row of another company are the same 404.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint signatures
# built below at runtime, and their types are the resource's schemas.

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request, Response

from syntera.api import fast_paths
from syntera.api.deps import Manager, Member, member_pool, member_transaction, principal
from syntera.api.pagination import page_request
from syntera.db.tables import Filter, Row
from syntera.errors import not_found
from syntera.kit.member import member_page, member_row, write_as_member
from syntera.kit.pagination import Page, PageRequest
from syntera.kit.resources import (
    M,
    Resource,
    access_row,
    create_row,
    delete_row,
    list_rows,
    update_row,
)
from syntera.tenancy import Principal
from syntera.unit_of_work import TenantTransaction

RowId = Annotated[UUID, Path(description="The row's id.")]
Caller = Annotated[Principal, Depends(principal)]


async def no_filters() -> list[Filter]:
    return []


def add_crud_routes(
    router: APIRouter,
    resource: Resource[M],
    *,
    managers_write: bool = False,
    managers_read: bool = False,
    filters: Callable[..., Awaitable[list[Filter]]] = no_filters,
    creation_values: Callable[[TenantTransaction], dict[str, Any]] | None = None,
    routes: tuple[str, ...] = ("create", "read", "update", "delete", "list"),
    on_change: Callable[[TenantTransaction, Row], None] | None = None,
) -> None:
    """Add the resource's routes to ``router``. ``managers_write`` (``managers_read``):
    only owners and admins create, change and delete (read); the database's policies
    say the same, this makes the answer a 403 rather than a 404 or an empty list.
    ``on_change`` is told of every row updated or deleted (to invalidate caches)."""
    Writer = Manager if managers_write else Member
    model, create_model, update_model = resource.model, resource.create, resource.update
    name = resource.singular
    Filters = Annotated[list[Filter], Depends(filters)]
    Paging = Annotated[PageRequest, Depends(page_request)]

    async def create(request: Request, caller: Caller, body: create_model) -> model:  # type: ignore[valid-type]
        values = body.changes()  # type: ignore[attr-defined]
        if caller.role == "authenticated" and creation_values is None and not managers_write:
            # A signed-in member's create is one round trip (write_as_member), as on the
            # fast path (syntera.api.fast_paths), which answers most of them before this.
            query, params = resource.table.insert_current_statement(values)
            return resource.out(await write_as_member(member_pool(request), caller, query, params))
        async with member_transaction(request, caller, managers_only=managers_write) as tx:
            if creation_values is not None:
                values.update(creation_values(tx))
            return resource.out(await create_row(tx, resource, values))

    async def read(request: Request, caller: Caller, row_id: RowId) -> model:  # type: ignore[valid-type]
        # The hot path: a signed-in user's read is one round trip (read_as_member).
        if caller.role == "authenticated":
            return resource.out(
                await member_row(member_pool(request), caller, resource, row_id, managers_read)
            )
        async with member_transaction(request, caller, managers_only=managers_read) as tx:
            return resource.out(await access_row(tx, resource, row_id))

    async def update(request: Request, caller: Caller, row_id: RowId, body: update_model) -> model:  # type: ignore[valid-type]
        changes = body.changes()  # type: ignore[attr-defined]
        if (
            caller.role == "authenticated" and changes and on_change is None
            and not managers_write
        ):  # fmt: skip
            # The hot path, as for a create: one round trip (write_as_member).
            query, params = resource.table.update_current_statement(row_id, changes)
            row = await write_as_member(
                member_pool(request), caller, query, params, not_found(resource.label)
            )
            return resource.out(row)
        async with member_transaction(request, caller, managers_only=managers_write) as tx:
            row = await update_row(tx, resource, row_id, changes)
            if on_change is not None:
                on_change(tx, row)
            return resource.out(row)

    async def delete(tx: Writer, row_id: RowId) -> Response:  # type: ignore[valid-type]
        row = await delete_row(tx, resource, row_id)
        if on_change is not None:
            on_change(tx, row)
        return Response(status_code=204)

    async def list_(
        request: Request, caller: Caller, paging: Paging, where: Filters
    ) -> Page[model]:  # type: ignore[valid-type]
        if caller.role == "authenticated" and not paging.exact_count:  # one round trip
            return await member_page(
                member_pool(request), caller, resource, paging, where, managers_read
            )
        async with member_transaction(request, caller, managers_only=managers_read) as tx:
            return await list_rows(tx, resource, paging, where)

    documented: dict[str, tuple[Callable[..., Any], str, str, int, str]] = {
        "create": (create, "POST", "", 201, f"Create a {name}."),
        "read": (read, "GET", "/{row_id}", 200, f"One {name} of your company."),
        "update": (update, "PATCH", "/{row_id}", 200, f"Change the fields sent of a {name}."),
        "delete": (delete, "DELETE", "/{row_id}", 204, f"Delete a {name}."),
        "list": (list_, "GET", "", 200, f"Your company's {name}s, newest first, paginated."),
    }
    fast_paths.register(
        router.prefix, resource, managers_read, read="read" in routes,
        filters=filters if "list" in routes else None,
        create="create" in routes and creation_values is None and not managers_write,
    )  # fmt: skip
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
