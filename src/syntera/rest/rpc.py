"""``/rest/v1/rpc/<function>``: call a function of an exposed schema, as PostgREST does.

``POST`` takes a JSON object of named arguments (a function whose one parameter is an
unnamed ``json``/``jsonb`` takes the whole body, as does any single-parameter function
with ``Prefer: params=single-object``); ``GET`` takes them as query parameters and runs
read-only, so a function that writes answers 405 (PostgreSQL's 25006, PostgREST's rule).
The overload is the one whose parameter names the arguments fit; none is 404 PGRST202,
several 300 PGRST203.

The arguments travel as one bound JSON parameter read by ``json_to_record`` with the
parameters' own types; the call is materialized once, and a function returning rows of
known columns (a table's rows, ``RETURNS TABLE``/OUT parameters) is then filtered,
ordered, ranged, counted and shaped (``select=``, embeds) by the read's builder. A scalar
is answered as its JSON value, a set of scalars as an array, one composite as an object,
``void`` as 204.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive

from syntera.rest.errors import RestError, range_error, singular_error
from syntera.rest.grammar import QueryParameters, parse_query
from syntera.rest.handler import Answer, Rest
from syntera.rest.query import Builder, Params, quote
from syntera.rest.request import OBJECT, OBJECT_UTF8, RestRequest, media_type_of, row_range
from syntera.rest.schema import Column, Function, Parameter, Relation, SchemaCache
from syntera.rest.writes import body_of, read_body

INPUT_MODES = ("i", "b", "v")
OUTPUT_MODES = ("o", "b", "t")
JSON_TYPES = ("json", "jsonb")


@dataclass(frozen=True)
class Call:
    """The function chosen and how its arguments are passed: named (``names``) or the
    whole body as its one parameter (``whole``)."""

    function: Function
    names: tuple[str, ...]
    whole: bool = False


def _inputs(function: Function) -> list[Parameter]:
    return [p for p in function.parameters if p.mode in INPUT_MODES]


def _not_found(schema: str, name: str, arguments: list[str], cache: SchemaCache) -> RestError:
    listed = ", ".join(sorted(arguments))
    signature = f"{schema}.{name}({listed})" if arguments else f"{schema}.{name} without parameters"
    searched = f"with parameters {listed}" if arguments else "without parameters"
    others = [n for s, n in cache.functions if s == schema and n != name]
    close = difflib.get_close_matches(name, others, n=1, cutoff=0.75)
    return RestError(
        404,
        "PGRST202",
        f"Could not find the function {signature} in the schema cache",
        f"Searched for the function {schema}.{name} {searched} or with a single unnamed "
        "json/jsonb parameter, but no matches were found in the schema cache.",
        f"Perhaps you meant to call the function {schema}.{close[0]}" if close else None,
    )


def choose(
    cache: SchemaCache,
    schema: str,
    name: str,
    arguments: list[str],
    *,
    body: bool,
    single_object: bool,
) -> Call:
    """The overload of ``schema.name`` that ``arguments`` (names) call."""
    candidates = cache.functions.get((schema, name), [])
    given = set(arguments)
    found: list[Call] = []
    for function in candidates:
        inputs = _inputs(function)
        if (
            body
            and len(inputs) == 1
            and (single_object or (not inputs[0].name and inputs[0].type in JSON_TYPES))
        ):
            found.append(Call(function, (), whole=True))
            continue
        names = {p.name for p in inputs}
        required = {p.name for p in inputs if not p.has_default}
        if all(p.name for p in inputs) and given <= names and required <= given:
            found.append(Call(function, tuple(p.name for p in inputs if p.name in given)))
    if not found:
        raise _not_found(schema, name, arguments, cache)
    if len(found) > 1:
        # Fewer unused defaults first, as PostgreSQL's own resolution would pick.
        found.sort(key=_unused_defaults)
        if _unused_defaults(found[0]) == _unused_defaults(found[1]):
            raise RestError(
                300,
                "PGRST203",
                "Could not choose the best candidate function between: "
                + ", ".join(_signature(call) for call in found),
                None,
                "Try renaming the parameters or the function itself in the database so "
                "function overloading can be resolved",
            )
    return found[0]


def _unused_defaults(call: Call) -> int:
    return len(_inputs(call.function)) - len(call.names)


def _signature(call: Call) -> str:
    function = call.function
    parameters = ", ".join(f"{p.name} => {p.type}" for p in _inputs(function))
    return f"{function.schema}.{function.name}({parameters})"


def _output_relation(cache: SchemaCache, function: Function) -> Relation | None:
    """The relation whose columns the function's rows have, if known."""
    if function.return_relation is not None:
        found = cache.relations.get(function.return_relation)
        if found is not None:
            return found
    outputs = [p for p in function.parameters if p.mode in OUTPUT_MODES]
    if outputs and function.return_type == "record":
        columns = {p.name: Column(p.name, p.type, True, None) for p in outputs if p.name}
        if columns:
            return Relation(function.schema, function.name, "f", columns)
    return None


def _call_sql(call: Call, params: Params, arguments_json: str) -> tuple[str, str]:
    """(the WITH item that reads the arguments, the function call over it)."""
    function = call.function
    name = f"{quote(function.schema)}.{quote(function.name)}"
    if not call.whole and not call.names:
        return "SELECT", f"{name}()"
    value = params.add(arguments_json)
    if call.whole:
        kind = _inputs(function)[0].type
        cast = kind if kind in JSON_TYPES else "json"
        arguments = f"SELECT {value}::{cast} AS pgrst_body"
        if kind not in JSON_TYPES:
            raise RestError(400, "PGRST100", "params=single-object needs a json or jsonb parameter")
        return arguments, f"{name}(pgrst_args.pgrst_body)"
    types = {p.name: p.type for p in _inputs(function)}
    definitions = ", ".join(f"{quote(n)} {types[n]}" for n in call.names)
    arguments = f"SELECT * FROM json_to_record({value}::json) AS _({definitions})"
    # A VARIADIC parameter takes its array by name only when marked so.
    variadic = {p.name for p in _inputs(function) if p.mode == "v"}
    passed = ", ".join(
        f"{'VARIADIC ' if n in variadic else ''}{quote(n)} := pgrst_args.{quote(n)}"
        for n in call.names
    )
    return arguments, f"{name}({passed})"


def _arguments(
    request: RestRequest, raw: bytes, cache: SchemaCache
) -> tuple[str, list[str], QueryParameters, bool]:
    """(the arguments as JSON text, their names, the query's other parameters, whether
    they came in the body)."""
    candidates = cache.functions.get((request.schema, request.name), [])
    all_names = frozenset(p.name for f in candidates for p in _inputs(f) if p.name)
    if request.method == "POST":
        query = parse_query(request.query_string)
        text = raw.decode("utf-8", errors="replace").strip() or "{}"
        try:
            document = orjson.loads(text)  # bounded depth, no lone surrogates
        except orjson.JSONDecodeError as error:
            raise RestError(400, "PGRST102", "Empty or invalid json", str(error)) from error
        single = request.preferences.params == "single-object"
        if not isinstance(document, dict) and not single:
            # A JSON array or scalar can only be the one json/jsonb argument.
            return text, [], query, True
        names = [] if single else list(document)
        return text, names, query, True
    query = parse_query(request.query_string, arguments=all_names)
    # A name given more than once is an array (PostgREST's ``?v=1&v=2`` for a variadic
    # or array parameter).
    values: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(request.query_string, keep_blank_values=True):
        if key in all_names and key in query.other:
            given = values.get(key)
            if given is None:
                values[key] = value
            elif isinstance(given, list):
                given.append(value)
            else:
                values[key] = [given, value]
    # One value for a VARIADIC parameter is its array of one (``?v=hi`` is ``{hi}``), unless
    # it is an array literal itself.
    variadic = {p.name for f in candidates for p in _inputs(f) if p.mode == "v"}
    for key in variadic & values.keys():
        given = values[key]
        if isinstance(given, str) and not given.startswith("{"):
            values[key] = [given]
    return json.dumps(values), list(values), query, False


async def call(rest: Rest, request: RestRequest, receive: Receive) -> Answer:
    """Answer ``/rest/v1/rpc/<function>`` (POST, GET, HEAD)."""
    media = media_type_of(request.header("accept"), csv=False)
    cache = await rest.schema.current()
    raw = (
        body_of(request, await read_body(receive), csv_allowed=False)
        if request.method == "POST"
        else b""
    )
    text, names, query, body = _arguments(request, raw, cache)
    single = request.preferences.params == "single-object"
    chosen = choose(cache, request.schema, request.name, names, body=body, single_object=single)
    if chosen.whole is False and body and not names and text.lstrip()[:1] not in ("{", ""):
        raise RestError(
            400, "PGRST102", "Empty or invalid json", "The arguments must be a JSON object"
        )
    if chosen.whole and single:
        request.applied.append("params=single-object")
    function = chosen.function
    read_only = request.method != "POST" or function.volatility != "v"
    params = Params()
    arguments, invocation = _call_sql(chosen, params, text)
    relation = _output_relation(cache, function)
    prelude = f"WITH pgrst_args AS ({arguments}), "
    if relation is None:
        return await _values(rest, request, function, prelude, invocation, params, read_only)
    max_rows = rest.settings.rest_max_rows
    rows = row_range(request.header("range"), query.limit.get(()), query.offset.get(()), max_rows)
    builder = Builder(cache, query, params)
    level = builder.level(
        relation, query.select, (), source="pgrst_call", limit=rows.limit, offset=rows.offset
    )
    builder.check_embedded()
    total = "NULL::bigint"
    if request.preferences.count == "exact":
        total = f"(SELECT pg_catalog.count(*) {level.from_where()})"
    sql = (
        f"{prelude}pgrst_call AS MATERIALIZED (SELECT _f.* FROM pgrst_args CROSS JOIN LATERAL"
        f" {invocation} _f), pgrst_source AS ({level.select()}) "
        f"SELECT {total} AS total, pg_catalog.count(_r) AS page_total, "
        "coalesce(json_agg(_r), '[]')::text AS body FROM pgrst_source _r"
    )
    results = await rest.run(request, [(sql, params.values)], read_only=read_only)
    row = results[0][0]
    body_text: str = row["body"]
    if not function.returns_set:
        # One composite: its object (null when the function returned no row).
        return Answer(200, body_text[1:-1].strip().encode() or b"null")
    page_total: int = row["page_total"]
    total_rows: int | None = row["total"]
    lower, upper = rows.offset, rows.offset + page_total - 1
    status = 200
    if total_rows is not None:
        if lower > total_rows:
            raise range_error(
                f"An offset of {lower} was requested, but there are only {total_rows} rows."
            )
        if 1 + upper - lower < total_rows:
            status = 206
    shown = "*" if total_rows is None else str(total_rows)
    headers = [
        (b"content-range", (f"{lower}-{upper}/{shown}" if page_total else f"*/{shown}").encode())
    ]
    if media == OBJECT:
        if page_total != 1:
            raise singular_error(page_total)
        return Answer(200, body_text[1:-1].strip().encode(), headers, OBJECT_UTF8)
    return Answer(status, body_text.encode(), headers)


async def _values(
    rest: Rest,
    request: RestRequest,
    function: Function,
    prelude: str,
    invocation: str,
    params: Params,
    read_only: bool,
) -> Answer:
    """A function whose result has no known columns: a scalar (or one composite) as its
    JSON value, a set as the array of them."""
    if function.returns_set:
        sql = (
            f"{prelude}pgrst_call AS MATERIALIZED (SELECT {invocation} AS v FROM pgrst_args)"
            " SELECT coalesce(json_agg(v), '[]')::text AS body, count(*) AS page_total"
            " FROM pgrst_call"
        )
    else:
        sql = (
            f"{prelude}pgrst_call AS MATERIALIZED (SELECT {invocation} AS v FROM pgrst_args)"
            " SELECT to_json(v)::text AS body, 1 AS page_total FROM pgrst_call"
        )
    results = await rest.run(request, [(sql, params.values)], read_only=read_only)
    if function.return_type == "void":
        return Answer(204)
    row = results[0][0] if results[0] else None
    body: str = row["body"] if row is not None and row["body"] is not None else "null"
    if function.returns_set:
        count = int(row["page_total"]) if row is not None else 0
        range_header = f"0-{count - 1}/*" if count else "*/*"
        return Answer(200, body.encode(), [(b"content-range", range_header.encode())])
    return Answer(200, body.encode())
