"""``GET`` and ``HEAD`` on ``/rest/v1/<relation>``: one statement, one round trip.

The statement (``syntera.rest.query.build_read``) answers the page as JSON text built by
PostgreSQL, the page's row count and, with ``Prefer: count=exact``, the total; a planned
or estimated count adds an ``EXPLAIN`` in the same round trip. The answer is the JSON
array, one object (``Accept: application/vnd.pgrst.object+json``) or CSV, with
``Content-Range`` (``0-19/123``, ``*/0``) and PostgREST's 200/206/416.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from starlette.types import Receive

from syntera.rest.errors import range_error, singular_error
from syntera.rest.grammar import parse_query
from syntera.rest.handler import Answer, Rest
from syntera.rest.query import cached_read
from syntera.rest.request import CSV, OBJECT, OBJECT_UTF8, RestRequest, media_type_of, row_range

CSV_UTF8 = b"text/csv; charset=utf-8"


async def read(rest: Rest, request: RestRequest, receive: Receive) -> Answer:
    """Answer a GET or HEAD of a table or view."""
    media = media_type_of(request.header("accept"))
    cache = await rest.schema.current()
    relation = cache.relation(request.schema, request.name)
    query = parse_query(request.query_string)
    max_rows = rest.settings.rest_max_rows
    rows = row_range(request.header("range"), query.limit.get(()), query.offset.get(()), max_rows)
    count = request.preferences.count
    if count is not None:
        request.applied.append(f"count={count}")
    statement = cached_read(cache, relation, query, limit=rows.limit, offset=rows.offset,
                           count=count, max_rows=max_rows)  # fmt: skip
    statements: list[tuple[str, dict[str, Any]]] = [(statement.query, statement.params)]
    if statement.plan is not None:
        statements.append((statement.plan, statement.params))
    results = await rest.run(request, statements, read_only=True)
    row = results[0][0]
    total: int | None = row["total"]
    if statement.plan is not None and (total is None or (max_rows and total > max_rows)):
        total = _planned_rows(results[1])
    page_total: int = row["page_total"]
    body: str = row["body"]
    lower = rows.offset
    upper = lower + page_total - 1
    status = 200
    if total is not None:
        if lower > total:
            raise range_error(
                f"An offset of {lower} was requested, but there are only {total} rows."
            )
        if 1 + upper - lower < total:
            status = 206
    shown_total = "*" if total is None else str(total)
    content_range = f"{lower}-{upper}/{shown_total}" if page_total else f"*/{shown_total}"
    headers = [(b"content-range", content_range.encode())]
    if media == OBJECT:
        if page_total != 1:
            raise singular_error(page_total)
        return Answer(200, body[1:-1].strip().encode(), headers, OBJECT_UTF8)
    if media == CSV:
        return Answer(status, _csv(body), headers, CSV_UTF8)
    return Answer(status, body.encode(), headers)


async def options(rest: Rest, request: RestRequest, receive: Receive) -> Answer:
    """``OPTIONS``: the methods the relation allows (views and tables alike, as PostgREST
    answers without asking whether a view is updatable)."""
    cache = await rest.schema.current()
    relation = cache.relation(request.schema, request.name)
    allowed = (
        b"OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE" if relation.is_table else b"OPTIONS,GET,HEAD"
    )
    return Answer(200, b"", [(b"allow", allowed)])


def _planned_rows(rows: list[Any]) -> int:
    plan = rows[0]["QUERY PLAN"] if rows else None
    if isinstance(plan, str):
        plan = orjson.loads(plan)
    try:
        return int(plan[0]["Plan"]["Plan Rows"])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return 0


def _csv(body: str) -> bytes:
    """The JSON array as CSV: a header of the first row's keys, then one line per row
    (null empty, objects and arrays as JSON)."""
    rows: list[dict[str, Any]] = orjson.loads(body)
    if not rows:
        return b""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(rows[0])
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in names])
    return out.getvalue().rstrip("\n").encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)
