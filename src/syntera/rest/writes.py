"""``POST``, ``PUT``, ``PATCH`` and ``DELETE`` on ``/rest/v1/<table>``: one statement, one
round trip, PostgREST's semantics (upserts by ``Prefer: resolution`` and ``on_conflict``,
``columns=`` and ``Prefer: missing=default``, ``text/csv`` bodies, ``limit``/``order`` on
PATCH and DELETE, ``Prefer: max-affected`` with ``handling=strict``).

The body travels as one bound JSON parameter and PostgreSQL reads it into the table's
row type (``json_populate_recordset(NULL::table, body)``, as PostgREST does), so every
value is converted by the column's own input function and nothing is formatted into
SQL; the column names are the schema cache's, quoted. The mutation is the source of the
answer::

    WITH pgrst_source AS (INSERT … RETURNING …)
    SELECT count(*) AS page_total, <the representation> AS body FROM …

``Prefer: return=representation`` renders the returned rows with the read's builder
(``select=`` with its embeds); ``minimal`` and ``headers-only`` return only a count (and
the primary key, for ``Location``). When one object is asked for
(``application/vnd.pgrst.object+json``) and another number of rows changed, the statement
itself fails, so the change is rolled back in the same round trip (PostgREST's rule);
so does a PATCH or DELETE that changes more rows than a strict ``max-affected`` allows.
A statement is built once per shape of request (``_cached``).
"""

from __future__ import annotations

import csv
import io
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import quote as url_quote

import orjson
import psycopg
from starlette.types import Receive

from syntera.api import json_guard
from syntera.rest.errors import RestError, singular_error
from syntera.rest.grammar import (
    Column,
    Condition,
    Embed,
    QueryParameters,
    SelectItem,
    Star,
    parse_query,
)
from syntera.rest.handler import Answer, Rest
from syntera.rest.query import Builder, Params, literal, path_ids, quote, read_shape, read_values
from syntera.rest.request import OBJECT, OBJECT_UTF8, RestRequest, media_type_of
from syntera.rest.schema import Relation, SchemaCache

# The singular check fails the statement with this text in a cast error (22P02): the
# only way plain SQL can abort its own transaction, and so roll the change back in the
# same round trip. The row count follows the marker.
SINGULAR_MARKER = "pgrst116:"
MAX_AFFECTED_MARKER = "pgrst124:"


@dataclass(frozen=True)
class Payload:
    """A write's body: its JSON text (an array of objects) and the columns it sets."""

    json: str
    columns: tuple[str, ...]
    rows: int


async def read_body(receive: Receive) -> bytes:
    """The whole request body (bounded already by the JSON guard); empty if the client
    went away."""
    return await json_guard.read_body(receive) or b""


FORM = "application/x-www-form-urlencoded"


def body_of(request: RestRequest, raw: bytes, *, csv_allowed: bool = True) -> bytes:
    """The body as JSON, by its Content-Type as PostgREST reads one: JSON (the default
    without a header), ``text/csv`` (tables), or a form (``a=1&b=x``: one object of
    text values, the last of a repeated name winning); any other type is 400 PGRST102."""
    header = request.header("content-type")
    kind = header.partition(";")[0].strip().lower() if header is not None else "application/json"
    if kind in ("application/json", "*/*", "") or kind.endswith("+json"):
        return raw
    if kind == "text/csv" and csv_allowed:
        return csv_rows(raw)
    if kind == FORM:
        try:
            pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError as error:
            raise _invalid_body("The form is not URL-encoded UTF-8") from error
        return orjson.dumps(dict(pairs))
    raise RestError(400, "PGRST102", f"Content-Type not acceptable: {kind}")


def _invalid_body(details: str) -> RestError:
    return RestError(400, "PGRST102", "Empty or invalid json", details)


def unknown_column(relation: Relation, name: str) -> RestError:
    """400 PGRST204: a column in ``columns=`` or the body that the table does not have."""
    return RestError(
        400,
        "PGRST204",
        f"Could not find the '{name}' column of '{relation.name}' in the schema cache",
    )


def csv_rows(body: bytes) -> bytes:
    """A ``text/csv`` body as the JSON array of its rows (the first line names the
    columns; ``NULL`` is null), as PostgREST reads one; every value stays text for the
    column's own input function."""
    try:
        lines = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as error:
        raise RestError(400, "PGRST102", "Invalid CSV", str(error)) from error
    if not lines:
        raise _invalid_body("The request body is empty")
    header, rows = lines[0], [line for line in lines[1:] if line]
    if any(len(row) != len(header) for row in rows):
        raise RestError(400, "PGRST102", "All lines must have same number of fields")
    objects = [
        {name: None if value == "NULL" else value for name, value in zip(header, row, strict=True)}
        for row in rows
    ]
    return orjson.dumps(objects)


def parse_payload(
    body: bytes, relation: Relation, columns_parameter: str | None, *, many: bool
) -> Payload:
    """The body of a POST (an object or an array of objects; ``many``) or PATCH (one
    object), checked against ``relation``: with ``columns=``, those columns (other keys
    are ignored); without, the keys of the objects, which must all be the same."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise _invalid_body("The request body is empty")
    try:
        # orjson: the body is parsed only for its shape and keys (PostgreSQL reads the
        # values from the text), and it is several times faster than json here.
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise _invalid_body(str(error)) from error
    if isinstance(document, dict):
        objects = [document]
        text = f"[{text}]"
    elif isinstance(document, list) and many:
        objects = document
    else:
        expected = "a JSON object or an array of objects" if many else "a JSON object"
        raise _invalid_body(f"The body must be {expected}")
    if not all(isinstance(item, dict) for item in objects):
        raise _invalid_body("Every element of the array must be a JSON object")
    if columns_parameter is not None:
        names = tuple(
            dict.fromkeys(part.strip().strip('"') for part in columns_parameter.split(","))
        )
        if any(not name for name in names):
            raise RestError(
                400,
                "PGRST100",
                "failed to parse columns parameter",
                f"an empty column name in ({columns_parameter})",
            )
    else:
        first = tuple(objects[0]) if objects else ()
        if any(set(item) != set(first) for item in objects[1:]):
            raise RestError(400, "PGRST102", "All object keys must match")
        names = first
    for name in names:
        if name not in relation.columns:
            raise unknown_column(relation, name)
    return Payload(text, names, len(objects))


def _returned_columns(
    cache: SchemaCache, relation: Relation, items: Sequence[SelectItem]
) -> list[str]:
    """The columns a representation reads from the changed rows: those it selects and
    those its embeds join on (RETURNING only these: a role may lack SELECT on others)."""
    wanted: dict[str, None] = {}
    for item in items:
        if isinstance(item, Star):
            return list(relation.columns)
        if isinstance(item, Column):
            relation.column(item.field.name)
            wanted[item.field.name] = None
        elif isinstance(item, Embed):
            for relationship in cache.relationships(relation, item.name, item.hint):
                wanted.update(dict.fromkeys(relationship.columns))
    return list(wanted)


def _representation_query(query: QueryParameters) -> QueryParameters:
    """The query the changed rows are rendered with: the top level's filters, order and
    range chose the rows to change, so only the embeds' remain."""
    return replace(
        query,
        where={path: value for path, value in query.where.items() if path},
        order={path: value for path, value in query.order.items() if path},
        limit={path: value for path, value in query.limit.items() if path},
        offset={path: value for path, value in query.offset.items() if path},
    )


@dataclass(frozen=True)
class Shape:
    """What a write answers: the representation, only the primary key (for Location),
    or only a count."""

    kind: str  # "representation" | "headers-only" | "minimal"
    singular: bool
    # Prefer: max-affected=N with handling=strict (PATCH and DELETE): more rows fail.
    max_affected: int | None = None


def _answer_sql(
    cache: SchemaCache,
    relation: Relation,
    query: QueryParameters,
    shape: Shape,
    params: Params,
    target: str,
) -> tuple[str, str]:
    """(RETURNING list, the SELECT over ``pgrst_source`` that answers); ``target`` is
    the changed table's alias in the statement."""
    if shape.kind == "representation":
        returning = ", ".join(
            f"{target}.{quote(c)}" for c in _returned_columns(cache, relation, query.select)
        )
        builder = Builder(cache, _representation_query(query), params)
        # The embeds' values named as in the whole request, apart from the top level's
        # filters, which choose the rows in the same statement.
        builder.path_ids = path_ids(query)
        level = builder.level(relation, query.select, (), source="pgrst_source")
        body = f"(SELECT coalesce(json_agg(_r), '[]')::text FROM ({level.select()}) _r)"
    elif shape.kind == "headers-only" and relation.primary_key:
        returning = ", ".join(f"{target}.{quote(c)}" for c in relation.primary_key)
        body = "(SELECT json_agg(pgrst_source)::text FROM pgrst_source)"
    else:
        returning, body = "1", "NULL::text"
    count = "(SELECT pg_catalog.count(*) FROM pgrst_source)"
    check = "NULL::int"
    if shape.singular:
        # Fails (22P02, with the marker and the count) unless exactly one row changed.
        check = f"(CASE WHEN {count} = 1 THEN '1' ELSE '{SINGULAR_MARKER}' || {count} END)::int"
    elif shape.max_affected is not None:
        # Fails the same way when more rows changed than the client allows.
        check = (
            f"(CASE WHEN {count} <= {int(shape.max_affected)} THEN '1'"
            f" ELSE '{MAX_AFFECTED_MARKER}' || {count} END)::int"
        )
    return returning or "1", f"SELECT {count} AS page_total, {body} AS body, {check} AS singular"


def _columns_sql(names: Iterable[str]) -> str:
    return ", ".join(quote(name) for name in names)


def _default_sql(relation: Relation, name: str) -> str:
    """The column's default expression (the catalog's own text) or NULL; ``%`` doubled
    for the driver's placeholders."""
    default = relation.columns[name].default
    return default.replace("%", "%%") if default is not None else "NULL"


def build_insert(
    cache: SchemaCache,
    relation: Relation,
    query: QueryParameters,
    payload: Payload,
    shape: Shape,
    *,
    missing_default: bool = False,
    resolution: str | None = None,
    on_conflict: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The statement of a POST (an insert, or an upsert with ``resolution``) or a PUT,
    and its answer."""
    params = Params()
    table = f"{quote(relation.schema)}.{quote(relation.name)}"
    body = params.put("body", payload.json)
    if missing_default and "columns" in query.other:
        # Per row: a key the object lacks takes the column's default, not NULL.
        values = ", ".join(
            f"CASE WHEN _j.value::jsonb ? {literal(name)} THEN _r.{quote(name)}"
            f" ELSE {_default_sql(relation, name)} END"
            for name in payload.columns
        )
        source = (
            f"SELECT {values} FROM json_array_elements({body}::json) _j,"
            f" LATERAL json_populate_record(NULL::{table}, _j.value) _r"
        )
    else:
        selected = ", ".join(f"_r.{quote(name)}" for name in payload.columns)
        source = f"SELECT {selected} FROM json_populate_recordset(NULL::{table}, {body}::json) _r"
    target = f"{table} AS pgrst_target"
    if payload.columns:
        target += f" ({_columns_sql(payload.columns)})"
    conflict = ""
    if resolution is not None:
        on = on_conflict
        keys = tuple(part.strip() for part in on.split(",")) if on else relation.primary_key
        if not keys:
            raise RestError(
                400,
                "PGRST100",
                "failed to parse on_conflict parameter",
                f"'{relation.name}' has no primary key: name the columns in on_conflict",
            )
        for key in keys:
            if key not in relation.columns:
                raise unknown_column(relation, key)
        conflict = f" ON CONFLICT ({_columns_sql(keys)})"
        # The conflict's own columns are equal by definition: setting them would only
        # ask for an UPDATE privilege on them that a role need not have.
        updates = [name for name in payload.columns if name not in keys]
        if resolution == "ignore-duplicates" or not updates:
            conflict += " DO NOTHING"
        else:
            conflict += " DO UPDATE SET " + ", ".join(
                f"{quote(name)} = EXCLUDED.{quote(name)}" for name in updates
            )
    returning, answer = _answer_sql(cache, relation, query, shape, params, "pgrst_target")
    sql = (
        f"WITH pgrst_source AS (INSERT INTO {target} {source}{conflict}"
        f" RETURNING {returning}) {answer}"
    )
    return sql, params.values


def _filtered(
    builder: Builder, relation: Relation, query: QueryParameters, alias: str
) -> tuple[str, str]:
    """(WHERE clause, ctid restriction for ``limit``) of a PATCH or DELETE."""
    level = builder.level(
        relation, (), (), alias=alias, limit=query.limit.get(()), offset=query.offset.get(())
    )
    where = " AND ".join(level.where) if level.where else "TRUE"
    if level.limit is None and level.offset is None:
        return where, ""
    table = f"{quote(relation.schema)}.{quote(relation.name)}"
    inner = f"SELECT {alias}.ctid FROM {table} {alias} WHERE {where}"
    if level.order:
        inner += " ORDER BY " + ", ".join(level.order)
    if level.limit is not None:
        inner += f" LIMIT {level.limit}"
    if level.offset is not None:
        inner += f" OFFSET {level.offset}"
    return where, f" AND {alias}.ctid = ANY(ARRAY({inner}))"


def build_update(
    cache: SchemaCache,
    relation: Relation,
    query: QueryParameters,
    payload: Payload,
    shape: Shape,
) -> tuple[str, dict[str, Any]]:
    """The statement of a PATCH: the update of the filtered rows and its answer."""
    params = Params()
    table = f"{quote(relation.schema)}.{quote(relation.name)}"
    body = params.put("body", payload.json)
    builder = Builder(cache, query, params)
    alias = "pgrst_target"
    where, limited = _filtered(builder, relation, query, alias)
    sets = ", ".join(f"{quote(name)} = _r.{quote(name)}" for name in payload.columns)
    returning, answer = _answer_sql(cache, relation, query, shape, params, alias)
    sql = (
        f"WITH pgrst_source AS (UPDATE {table} {alias} SET {sets}"
        f" FROM (SELECT * FROM json_populate_recordset(NULL::{table}, {body}::json)"
        f" LIMIT 1) _r WHERE {where}{limited} RETURNING {returning}) {answer}"
    )
    return sql, params.values


def build_delete(
    cache: SchemaCache, relation: Relation, query: QueryParameters, shape: Shape
) -> tuple[str, dict[str, Any]]:
    """The statement of a DELETE: the filtered rows removed and its answer."""
    params = Params()
    table = f"{quote(relation.schema)}.{quote(relation.name)}"
    builder = Builder(cache, query, params)
    alias = "pgrst_target"
    where, limited = _filtered(builder, relation, query, alias)
    returning, answer = _answer_sql(cache, relation, query, shape, params, alias)
    sql = (
        f"WITH pgrst_source AS (DELETE FROM {table} {alias} WHERE {where}{limited}"
        f" RETURNING {returning}) {answer}"
    )
    return sql, params.values


# Statements by what they depend on besides their values (the method and its
# preferences, the columns written, the request's shape, the schema generation): a client
# sends the same few writes again and again, and building one costs about 0.1 ms.
_STATEMENTS: OrderedDict[Hashable, str] = OrderedDict()
STATEMENTS_KEPT = 512


def _cached(
    kind: Hashable, cache: SchemaCache, relation: Relation, query: QueryParameters,
    shape: Shape, payload: Payload | None, build: Callable[[], tuple[str, dict[str, Any]]],
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """``build()``, once per shape: later requests of the shape take the cached text
    with their own values, named as the builders name them (the body ``body``, the
    filters by their place in the request, ``read_values``)."""
    key = (cache.generation, relation.schema, relation.name, kind, shape, read_shape(query))
    found = _STATEMENTS.get(key)
    if found is None:
        sql, values = build()
        _STATEMENTS[key] = sql
        if len(_STATEMENTS) > STATEMENTS_KEPT:
            _STATEMENTS.popitem(last=False)
        return sql, values
    _STATEMENTS.move_to_end(key)
    values = read_values(query)
    if payload is not None:
        values["body"] = payload.json
    return found, values


def _shape(request: RestRequest, singular: bool, *, limited: bool = False) -> Shape:
    preferences = request.preferences
    returned = preferences.return_
    if returned is not None:
        request.applied.append(f"return={returned}")
    maximum = None
    if limited and preferences.handling == "strict" and preferences.max_affected is not None:
        maximum = preferences.max_affected
        request.applied.extend(["handling=strict", f"max-affected={maximum}"])
    return Shape(returned or "minimal", singular, maximum)


def _writable(relation: Relation) -> None:
    if relation.kind not in ("r", "p", "v", "f"):
        raise RestError(405, "PGRST117", f"Unsupported HTTP method on '{relation.name}'")


async def _execute(
    rest: Rest, request: RestRequest, statement: tuple[str, dict[str, Any]]
) -> dict[str, Any]:
    try:
        results = await rest.run(request, [statement], read_only=False)
    except psycopg.errors.InvalidTextRepresentation as error:
        message = error.diag.message_primary or ""
        if SINGULAR_MARKER in message:
            rows = message.split(SINGULAR_MARKER, 1)[1].rstrip('"')
            raise singular_error(int(rows) if rows.isdigit() else 0) from error
        if MAX_AFFECTED_MARKER in message:
            rows = message.split(MAX_AFFECTED_MARKER, 1)[1].rstrip('"')
            raise RestError(
                400,
                "PGRST124",
                "Query result exceeds max-affected preference constraint",
                f"The query affects {rows} rows",
            ) from error
        raise
    row: dict[str, Any] = dict(results[0][0])
    return row


def _content_range(request: RestRequest, rows: int, *, insert: bool) -> bytes:
    total = str(rows) if request.preferences.count == "exact" else "*"
    if insert or rows == 0:
        return f"*/{total}".encode()
    return f"0-{rows - 1}/{total}".encode()


def _answer(
    request: RestRequest, shape: Shape, row: dict[str, Any], status: int, *, insert: bool
) -> Answer:
    rows: int = row["page_total"]
    headers = [(b"content-range", _content_range(request, rows, insert=insert))]
    if shape.kind != "representation":
        return Answer(status if insert else 204, b"", headers)
    body: str = row["body"]
    if shape.singular:
        return Answer(status, body[1:-1].strip().encode(), headers, OBJECT_UTF8)
    return Answer(status, body.encode(), headers)


def _location(request: RestRequest, relation: Relation, row: dict[str, Any]) -> bytes | None:
    """``/table?pk=eq.value`` of the one row a POST created (PostgREST's Location)."""
    keys = orjson.loads(row["body"]) if row.get("body") else None
    if not keys or len(keys) != 1 or not relation.primary_key:
        return None
    key = keys[0]
    query = "&".join(
        f"{url_quote(name)}=eq.{url_quote(str(key[name]), safe='')}"
        for name in relation.primary_key
    )
    return f"/{url_quote(relation.name)}?{query}".encode()


async def _target(
    rest: Rest, request: RestRequest
) -> tuple[SchemaCache, Relation, QueryParameters, bool]:
    singular = media_type_of(request.header("accept"), csv=False) == OBJECT
    cache = await rest.schema.current()
    relation = cache.relation(request.schema, request.name)
    _writable(relation)
    query = parse_query(request.query_string)
    return cache, relation, query, singular


async def insert(rest: Rest, request: RestRequest, receive: Receive) -> Answer:
    """Answer a POST: insert one row or many, or upsert them (``Prefer: resolution``)."""
    cache, relation, query, singular = await _target(rest, request)
    raw = body_of(request, await read_body(receive))
    payload = parse_payload(raw, relation, query.other.get("columns"), many=True)
    if request.preferences.missing == "default":
        request.applied.append("missing=default")
    shape = _shape(request, singular)
    if request.preferences.resolution is not None:
        request.applied.append(f"resolution={request.preferences.resolution}")
    statement = _cached(
        ("POST", payload.columns, "columns" in query.other, request.preferences.missing,
         request.preferences.resolution, query.other.get("on_conflict")),
        cache, relation, query, shape, payload,
        lambda: build_insert(
            cache, relation, query, payload, shape,
            missing_default=request.preferences.missing == "default",
            resolution=request.preferences.resolution,
            on_conflict=query.other.get("on_conflict"),
        ),
    )  # fmt: skip
    row = await _execute(rest, request, statement)
    answer = _answer(request, shape, row, 201, insert=True)
    if shape.kind == "headers-only":
        location = _location(request, relation, row)
        if location is not None:
            answer.headers.append((b"location", location))
    return answer


async def update(rest: Rest, request: RestRequest, receive: Receive) -> Answer:
    """Answer a PATCH: set the body's columns on the rows the filters choose."""
    cache, relation, query, singular = await _target(rest, request)
    raw = body_of(request, await read_body(receive), csv_allowed=False)
    payload = parse_payload(raw, relation, query.other.get("columns"), many=False)
    shape = _shape(request, singular, limited=True)
    if not payload.columns:
        # Nothing to set: PostgREST changes nothing and answers as for no row.
        empty = {"page_total": 0, "body": "[]"}
        if shape.singular:
            raise singular_error(0)
        return _answer(request, shape, empty, 200, insert=False)
    statement = _cached(
        ("PATCH", payload.columns), cache, relation, query, shape, payload,
        lambda: build_update(cache, relation, query, payload, shape),
    )  # fmt: skip
    row = await _execute(rest, request, statement)
    return _answer(request, shape, row, 200, insert=False)


async def delete(rest: Rest, request: RestRequest, receive: Receive) -> Answer:
    """Answer a DELETE: remove the rows the filters choose."""
    cache, relation, query, singular = await _target(rest, request)
    shape = _shape(request, singular, limited=True)
    statement = _cached(
        ("DELETE",), cache, relation, query, shape, None,
        lambda: build_delete(cache, relation, query, shape),
    )  # fmt: skip
    row = await _execute(rest, request, statement)
    return _answer(request, shape, row, 200, insert=False)


def _put_key(relation: Relation, query: QueryParameters) -> dict[str, str]:
    """The primary key a PUT names: its filters must be exactly ``eq`` on every column of
    the primary key (405 PGRST105 otherwise, PostgREST's rule)."""
    invalid = RestError(
        405, "PGRST105", "Filters must include all and only primary key columns with 'eq' operators"
    )
    named: dict[str, str] = {}
    for predicate in query.where.get((), []):
        if (
            not isinstance(predicate, Condition)
            or predicate.operator != "eq"
            or predicate.negated
            or predicate.quantifier is not None
            or predicate.field.path
            or predicate.field.name in named
            or not isinstance(predicate.value, str)
        ):
            raise invalid
        named[predicate.field.name] = predicate.value
    if not relation.primary_key or set(named) != set(relation.primary_key):
        raise invalid
    if query.limit.get(()) is not None or query.offset.get(()):
        raise RestError(
            400, "PGRST114", "limit/offset querystring parameters are not allowed for PUT"
        )
    return named


async def put(rest: Rest, request: RestRequest, receive: Receive) -> Answer:
    """Answer a PUT: create or replace the one row the primary-key filters name (the
    body's key must be the same)."""
    cache, relation, query, singular = await _target(rest, request)
    key = _put_key(relation, query)
    raw = body_of(request, await read_body(receive), csv_allowed=False)
    payload = parse_payload(raw, relation, query.other.get("columns"), many=False)
    document = orjson.loads(payload.json)[0]
    for column, value in key.items():
        given = document.get(column)
        if given is None or _as_text(given) != value:
            raise RestError(
                400, "PGRST115", "Payload values do not match URL in primary key column(s)"
            )
    shape = _shape(request, singular)
    on_conflict = ",".join(relation.primary_key)
    statement = _cached(
        ("PUT", payload.columns), cache, relation, query, shape, payload,
        lambda: build_insert(cache, relation, query, payload, shape,
                             resolution="merge-duplicates", on_conflict=on_conflict),
    )  # fmt: skip
    row = await _execute(rest, request, statement)
    return _answer(request, shape, row, 200, insert=False)


def _as_text(value: Any) -> str:
    """A JSON value as a filter's text would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else orjson.dumps(value).decode()
