"""The SQL of a read: one statement, its JSON built by PostgreSQL.

A request's parsed parameters (``syntera.rest.grammar``) and the schema cache give a
``SELECT`` whose identifiers are the cache's (always quoted) and whose values are bound
parameters. Embedded resources are ``LEFT JOIN LATERAL`` subqueries along the foreign
key (``json_agg`` for to-many, ``row_to_json`` for to-one); ``!inner`` and
``rel=not.is.null`` keep the rows whose embed is not empty.

The top statement, as PostgREST's::

    WITH pgrst_source AS (SELECT … FROM … WHERE … ORDER BY … LIMIT … OFFSET …)
    SELECT <total>, count(*) AS page_total, coalesce(json_agg(_r), '[]')::text AS body
      FROM pgrst_source _r

``build_level`` is the reusable part for writes: it renders one level (and its embeds)
over any source, such as a ``WITH pgrst_source AS (INSERT … RETURNING *)``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from syntera.rest.errors import RestError
from syntera.rest.grammar import (
    Column,
    Condition,
    Embed,
    EmbedPath,
    Field,
    Logic,
    OrderTerm,
    Predicate,
    QueryParameters,
    SelectItem,
    Star,
)
from syntera.rest.schema import Relation, Relationship, SchemaCache

CountKind = Literal["exact", "planned", "estimated"]

COMPARISONS = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE",
    "ilike": "ILIKE", "match": "~", "imatch": "~*", "cs": "@>", "cd": "<@", "ov": "&&",
    "sl": "<<", "sr": ">>", "nxr": "&<", "nxl": "&>", "adj": "-|-",
}  # fmt: skip
FTS_FUNCTIONS = {
    "fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery",
    "wfts": "websearch_to_tsquery",
}  # fmt: skip
IS_SQL = {"null": "IS NULL", "not_null": "IS NOT NULL", "true": "IS TRUE", "false": "IS FALSE",
          "unknown": "IS UNKNOWN"}  # fmt: skip


_ARRAY_INDEX = re.compile(r"-?[0-9]{1,9}")


def quote(name: str) -> str:
    """An identifier, quoted (names come from the schema cache, quoting keeps them exact)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A string literal (JSON keys of a path); ``%`` doubled for psycopg's placeholders."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


class Params:
    """The values of a statement: ``add`` binds one as ``%(pN)s``; ``put`` under a name
    of its own (the reads name theirs by where the value stands in the request, so
    that a statement cached per shape takes the next request's values: ``read_values``)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        return self.put(f"p{len(self.values)}", value)

    def put(self, name: str, value: Any) -> str:
        self.values[name] = value
        return f"%({name})s"


def condition_values(condition: Condition, slot: str) -> dict[str, Any]:
    """The bound values of a filter, by name (``slot`` names its place in the request)."""
    operator, value = condition.operator, condition.value
    if operator == "is":
        return {}
    if operator == "in":
        items = value if isinstance(value, tuple) else (value,)
        return {f"{slot}_{index}": item for index, item in enumerate(items)}
    values: dict[str, Any] = {}
    if condition.config:
        values[f"{slot}_c"] = condition.config
    if condition.quantifier is not None and isinstance(value, tuple):
        text = _array_literal(value)
    else:
        text = str(value)
    if operator in ("like", "ilike"):
        text = text.replace("*", "%")
    values[slot] = text
    return values


@dataclass
class Level:
    """One level of a read rendered: its select list (and the labels of its output
    columns), its FROM with the embeds' joins, its WHERE, ORDER BY, LIMIT and OFFSET."""

    columns: list[str]
    labels: list[str]
    joins: list[str]
    where: list[str]
    order: list[str]
    limit: str | None = None
    offset: str | None = None
    alias: str = "t0"
    source: str = ""

    def from_where(self) -> str:
        """``FROM … [JOIN …] [WHERE …]``: what a count of this level reads."""
        text = f"FROM {self.source} {self.alias}"
        if self.joins:
            text += " " + " ".join(self.joins)
        if self.where:
            text += " WHERE " + " AND ".join(self.where)
        return text

    def select(self) -> str:
        """The whole SELECT of this level."""
        text = f"SELECT {', '.join(self.columns) or 'NULL'} {self.from_where()}"
        if self.order:
            text += " ORDER BY " + ", ".join(self.order)
        if self.limit is not None:
            text += f" LIMIT {self.limit}"
        if self.offset is not None:
            text += f" OFFSET {self.offset}"
        return text


def field_sql(alias: str, relation: Relation, target: Field) -> str:
    """A column (checked against the cache), or a computed column (its function of the
    row), and its JSON path, as SQL."""
    if target.name not in relation.columns and target.name in relation.computed:
        function = relation.computed[target.name]
        sql = f"{quote(relation.schema)}.{quote(function)}({alias})"
    else:
        relation.column(target.name)
        sql = f"{alias}.{quote(target.name)}"
    for step in target.path:
        # An array index is written as a number only when it is one (ASCII digits, one
        # leading minus): any other text, "--1" included, would be SQL, so it is a literal.
        key = step.key if _ARRAY_INDEX.fullmatch(step.key) else literal(step.key)
        sql += ("->>" if step.as_text else "->") + key
    return sql


def _array_literal(items: Sequence[str]) -> str:
    return (
        "{" + ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "}"
    )


def condition_sql(lhs: str, condition: Condition, params: Params, slot: str | None = None) -> str:
    """One filter as SQL over ``lhs``, its values bound (named after ``slot``; by default
    the next free name)."""
    operator = condition.operator
    slot = slot or f"p{len(params.values)}"
    values = condition_values(condition, slot)
    for name, value in values.items():
        params.put(name, value)
    if operator == "is":
        sql = f"{lhs} {IS_SQL[str(condition.value)]}"
    elif operator == "in":
        sql = f"{lhs} IN ({', '.join(f'%({name})s' for name in values)})" if values else "FALSE"
    elif operator == "isdistinct":
        sql = f"{lhs} IS DISTINCT FROM %({slot})s"
    elif operator in FTS_FUNCTIONS:
        config = f"%({slot}_c)s::regconfig, " if condition.config else ""
        sql = f"{lhs} @@ {FTS_FUNCTIONS[operator]}({config}%({slot})s)"
    elif condition.quantifier is not None:
        sql = f"{lhs} {COMPARISONS[operator]} {condition.quantifier.upper()}(%({slot})s)"
    else:
        sql = f"{lhs} {COMPARISONS[operator]} %({slot})s"
    return f"NOT ({sql})" if condition.negated else sql


class Builder:
    """Renders the levels of one request over the schema cache."""

    def __init__(self, cache: SchemaCache, query: QueryParameters, params: Params) -> None:
        self.cache = cache
        self.query = query
        self.params = params
        self.counter = 0
        self.path_ids = path_ids(query)
        self.visited: set[EmbedPath] = set()

    def check_embedded(self) -> None:
        """400 PGRST108 for parameters of an embed the request does not select
        (``nope.col=eq.1``, ``nope.order=…``): PostgREST refuses them, never ignores."""
        for path in sorted({*self.query.where, *self.query.order, *self.query.limit,
                            *self.query.offset}):  # fmt: skip
            if path in self.visited:
                continue
            missing = next(
                path[: i + 1] for i in range(len(path)) if path[: i + 1] not in self.visited
            )
            name = missing[-1]
            raise RestError(
                400, "PGRST108",
                f"Cannot apply filter because '{name}' is not an embedded resource in this request",
                None, f"Verify that '{name}' is included in the 'select' query parameter.",
            )  # fmt: skip

    def _alias(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def level(
        self,
        relation: Relation,
        items: Sequence[SelectItem],
        path: EmbedPath,
        *,
        source: str | None = None,
        alias: str | None = None,
        correlation: list[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Level:
        """Render ``relation`` (or ``source``, rows shaped as it) selecting ``items``,
        with the filters, order and range of ``path`` (``limit``/``offset`` given for
        the top, where the Range header and max-rows join in)."""
        alias = alias or self._alias("t")
        self.visited.add(path)
        level = Level(
            [],
            [],
            [],
            list(correlation or []),
            [],
            alias=alias,
            source=source or f"{quote(relation.schema)}.{quote(relation.name)}",
        )
        embeds: dict[str, tuple[str, Relationship, Embed, Level]] = {}
        for item in items:
            if isinstance(item, Star):
                for name in relation.columns:
                    level.columns.append(f"{alias}.{quote(name)}")
                    level.labels.append(name)
            elif isinstance(item, Column):
                sql = field_sql(alias, relation, item.field)
                if item.cast:
                    sql = f"({sql})::{item.cast}"
                label = item.alias or item.field.label
                level.columns.append(f"{sql} AS {quote(label)}")
                level.labels.append(label)
            else:
                embeds[item.key] = self._embed(relation, alias, item, (*path, item.key), level)
        number = self.path_ids.get(path)
        for index, predicate in enumerate(self.query.where.get(path, [])):
            slot = f"w{number}_{index}"
            level.where.append(self._predicate(relation, alias, predicate, embeds, slot))
        for term in self.query.order.get(path, ()):
            level.order.append(self._order(relation, alias, term, embeds))
        if path:
            limit, offset = self.query.limit.get(path), self.query.offset.get(path)
        # Written in the statement, as PostgREST does: a LIMIT the planner sees is planned
        # for. Bound as a parameter, the API's CPU per request of bench.rest's page and
        # embed was 1.55 and 1.37 ms; written, 1.05 and 1.07 (a busy 2-CPU machine).
        if limit is not None:
            level.limit = str(int(limit))
        if offset:
            level.offset = str(int(offset))
        return level

    def _embed(
        self, origin: Relation, alias: str, embed: Embed, path: EmbedPath, parent: Level
    ) -> tuple[str, Relationship, Embed, Level]:
        relationship = self._relationship(origin, embed)
        target = self.cache.relation(origin.schema, relationship.foreign_table)
        child_alias = self._alias("t")
        junction = None
        if relationship.junction is not None:
            # Many-to-many: the target's rows joined to the junction's rows of this one.
            junction = self._alias("j")
            correlation = [
                f"{junction}.{quote(link)} = {alias}.{quote(ours)}"
                for ours, link in zip(relationship.columns, relationship.junction_columns,
                                      strict=True)
            ]  # fmt: skip
        else:
            correlation = [
                f"{child_alias}.{quote(theirs)} = {alias}.{quote(ours)}"
                for ours, theirs in zip(relationship.columns, relationship.foreign_columns,
                                        strict=True)
            ]  # fmt: skip
        child = self.level(target, embed.items, path, alias=child_alias, correlation=correlation)
        if relationship.junction is not None:
            links = " AND ".join(
                f"{junction}.{quote(link)} = {child_alias}.{quote(key)}"
                for link, key in zip(relationship.junction_foreign_columns,
                                     relationship.foreign_columns, strict=True)
            )  # fmt: skip
            child.joins.insert(
                0,
                f"JOIN {quote(target.schema)}.{quote(relationship.junction)} {junction} ON {links}",
            )
        join = self._alias("e")
        if embed.spread:
            if not relationship.to_one:
                raise RestError(
                    400, "PGRST119",
                    f"A spread operation on '{embed.name}' is not possible",
                    f"'{origin.name}' and '{embed.name}' do not form a many-to-one or "
                    "one-to-one relationship",
                )  # fmt: skip
            parent.joins.append(f"LEFT JOIN LATERAL ({child.select()}) {join} ON TRUE")
            for label in child.labels:
                parent.columns.append(f"{join}.{quote(label)} AS {quote(label)}")
                parent.labels.append(label)
        elif relationship.to_one:
            parent.joins.append(
                f"LEFT JOIN LATERAL (SELECT row_to_json(_x) AS body FROM ({child.select()}) _x)"
                f" {join} ON TRUE"
            )
            parent.columns.append(f"{join}.body AS {quote(embed.key)}")
            parent.labels.append(embed.key)
        else:
            parent.joins.append(
                f"LEFT JOIN LATERAL (SELECT json_agg(_x) AS body FROM ({child.select()}) _x)"
                f" {join} ON TRUE"
            )
            parent.columns.append(f"coalesce({join}.body, '[]') AS {quote(embed.key)}")
            parent.labels.append(embed.key)
        if embed.join == "inner":
            presence = child.alias if embed.spread else f"{join}.body"
            parent.where.append(
                f"EXISTS (SELECT 1 {child.from_where()})"
                if embed.spread
                else f"{presence} IS NOT NULL"
            )
        return join, relationship, embed, child

    def _relationship(self, origin: Relation, embed: Embed) -> Relationship:
        found = self.cache.relationships(origin, embed.name, embed.hint)
        if len(found) == 1:
            return found[0]
        if not found:
            hint = f"' using the hint '{embed.hint}" if embed.hint else ""
            raise RestError(
                400, "PGRST200",
                f"Could not find a relationship between '{origin.name}' and '{embed.name}' "
                "in the schema cache",
                f"Searched for a foreign key relationship between '{origin.name}' and "
                f"'{embed.name}{hint}' in the schema '{origin.schema}', but no matches were found.",
            )  # fmt: skip
        raise RestError(
            300, "PGRST201",
            f"Could not embed because more than one relationship was found for "
            f"'{origin.name}' and '{embed.name}'",
            [relationship.described() for relationship in found],
            f"Try changing '{embed.name}' to one of the following: "
            + ", ".join(f"'{embed.name}!{r.constraint}'" for r in found)
            + ". Find the desired relationship in the 'details' key.",
        )  # fmt: skip

    def _predicate(
        self,
        relation: Relation,
        alias: str,
        predicate: Predicate,
        embeds: dict[str, tuple[str, Relationship, Embed, Level]],
        slot: str,
    ) -> str:
        if isinstance(predicate, Logic):
            parts = [
                self._predicate(relation, alias, child, embeds, f"{slot}_{index}")
                for index, child in enumerate(predicate.children)
            ]
            joined = f" {predicate.operator.upper()} ".join(f"({part})" for part in parts)
            return f"NOT ({joined})" if predicate.negated else f"({joined})"
        name = predicate.field.name
        if name in embeds and not predicate.field.path and name not in relation.columns:
            return self._embed_presence(embeds[name], predicate)
        lhs = field_sql(alias, relation, predicate.field)
        return condition_sql(lhs, predicate, self.params, slot)

    def _embed_presence(
        self, embedded: tuple[str, Relationship, Embed, Level], condition: Condition
    ) -> str:
        """``rel=is.null`` / ``rel=not.is.null``: rows whose embed is empty / not."""
        join, _, embed, child = embedded
        if condition.operator != "is" or condition.value not in ("null", "not_null"):
            raise RestError(
                400, "PGRST120", f"Bad operator on the '{embed.key}' embedded resource",
                "Only is null or not is null filters are allowed on embedded resources",
            )  # fmt: skip
        present = (condition.value == "not_null") != condition.negated
        exists = (
            f"EXISTS (SELECT 1 {child.from_where()})"
            if embed.spread
            else f"{join}.body IS NOT NULL"
        )
        return exists if present else f"NOT ({exists})"

    def _order(
        self,
        relation: Relation,
        alias: str,
        term: OrderTerm,
        embeds: dict[str, tuple[str, Relationship, Embed, Level]],
    ) -> str:
        if term.embed is None:
            sql = field_sql(alias, relation, term.field)
        else:
            sql = self._related_order(relation, term.embed, term, embeds)
        sql += " DESC" if term.descending else " ASC"
        if term.nulls:
            sql += f" NULLS {term.nulls.upper()}"
        return sql

    def _related_order(
        self,
        relation: Relation,
        name: str,
        term: OrderTerm,
        embeds: dict[str, tuple[str, Relationship, Embed, Level]],
    ) -> str:
        """``order=embed(col)``: the column of the to-one embed's row, as a subquery."""
        if name not in embeds:
            raise RestError(
                400, "PGRST108", f"'{name}' is not an embedded resource in this request", None,
                f"Verify that '{name}' is included in the 'select' query parameter.",
            )  # fmt: skip
        _, relationship, _, child = embeds[name]
        if not relationship.to_one:
            raise RestError(
                400, "PGRST118", f"A related order on '{name}' is not possible",
                f"'{relation.name}' and '{name}' do not form a many-to-one or one-to-one "
                "relationship",
            )  # fmt: skip
        target = self.cache.relation(relation.schema, relationship.foreign_table)
        column = field_sql(child.alias, target, term.field)
        correlation = " AND ".join(child.where[: len(relationship.columns)])
        return f"(SELECT {column} FROM {child.source} {child.alias} WHERE {correlation})"


@dataclass(frozen=True)
class ReadStatement:
    """A read's statement(s): ``query`` answers ``total`` (exact count or NULL),
    ``page_total`` and ``body`` (the JSON array, as text); ``plan`` (for planned and
    estimated counts) is an EXPLAIN whose row estimate is the total."""

    query: str
    params: dict[str, Any]
    plan: str | None = None


def path_ids(query: QueryParameters) -> dict[EmbedPath, int]:
    """A number for each embed path the request gives parameters to (names its values)."""
    paths = sorted({*query.where, *query.limit, *query.offset})
    return {path: index for index, path in enumerate(paths)}


def read_values(query: QueryParameters) -> dict[str, Any]:
    """The values of a read's statement, named as ``Builder`` names them: what a
    statement cached for the request's shape is run with."""
    values: dict[str, Any] = {}
    numbers = path_ids(query)

    def walk(predicate: Predicate, slot: str) -> None:
        if isinstance(predicate, Logic):
            for index, child in enumerate(predicate.children):
                walk(child, f"{slot}_{index}")
        else:
            values.update(condition_values(predicate, slot))

    for path, predicates in query.where.items():
        for index, predicate in enumerate(predicates):
            walk(predicate, f"w{numbers[path]}_{index}")
    return values


def _predicate_shape(predicate: Predicate) -> Hashable:
    if isinstance(predicate, Logic):
        children = tuple(_predicate_shape(child) for child in predicate.children)
        return ("logic", predicate.operator, predicate.negated, children)
    value = predicate.value
    kept = len(value) if isinstance(value, tuple) else value if predicate.operator == "is" else None
    # The field's name and path, not the Field: a dataclass hashes in Python, and the
    # key is hashed at every request (py-spy: the cache's key was 3% of a fast read).
    field = predicate.field
    return (field.name, field.path, predicate.operator, predicate.negated,
            predicate.quantifier, predicate.config is not None, kept)  # fmt: skip


def _sorted(items: dict[EmbedPath, Any]) -> tuple[tuple[EmbedPath, Any], ...]:
    """A dict's items by key (paths are unique, so values are never compared)."""
    return tuple(sorted(items.items())) if len(items) > 1 else tuple(items.items())


def read_shape(query: QueryParameters) -> Hashable:
    """What a read's statement depends on besides its values."""
    where = tuple(
        (path, tuple(map(_predicate_shape, predicates)))
        for path, predicates in _sorted(query.where)
    )
    return (query.select, where, _sorted(query.order), _sorted(query.limit),
            _sorted(query.offset))  # fmt: skip


# Statements by (schema generation, relation, shape, range, count): a client sends the
# same few shapes again and again, and building one costs about 0.1 ms of Python.
_STATEMENTS: OrderedDict[Hashable, tuple[str, str | None]] = OrderedDict()
STATEMENTS_KEPT = 512


def cached_read(
    cache: SchemaCache,
    relation: Relation,
    query: QueryParameters,
    *,
    limit: int | None,
    offset: int,
    count: CountKind | None,
    max_rows: int | None,
) -> ReadStatement:
    """``build_read``, built once per shape of request and schema cache."""
    key = (cache.generation, relation.schema, relation.name, read_shape(query), limit, offset,
           count, max_rows)  # fmt: skip
    found = _STATEMENTS.get(key)
    if found is None:
        statement = build_read(cache, relation, query, limit=limit, offset=offset, count=count,
                               max_rows=max_rows)  # fmt: skip
        _STATEMENTS[key] = (statement.query, statement.plan)
        if len(_STATEMENTS) > STATEMENTS_KEPT:
            _STATEMENTS.popitem(last=False)
        return statement
    _STATEMENTS.move_to_end(key)
    return ReadStatement(found[0], read_values(query), found[1])


def build_read(
    cache: SchemaCache,
    relation: Relation,
    query: QueryParameters,
    *,
    limit: int | None,
    offset: int,
    count: CountKind | None,
    max_rows: int | None,
) -> ReadStatement:
    """The statement of ``GET /rest/v1/<relation>``."""
    params = Params()
    builder = Builder(cache, query, params)
    level = builder.level(relation, query.select, (), limit=limit, offset=offset)
    builder.check_embedded()
    total = "NULL::bigint"
    plan = None
    if count == "exact":
        total = f"(SELECT pg_catalog.count(*) {level.from_where()})"
    elif count in ("planned", "estimated"):
        plan = f"EXPLAIN (FORMAT JSON) SELECT 1 {level.from_where()}"
        if count == "estimated" and max_rows is not None:
            # Exact up to max-rows, the planner's estimate beyond (PostgREST's rule).
            total = (f"(SELECT pg_catalog.count(*) FROM (SELECT 1 {level.from_where()} "
                     f"LIMIT {int(max_rows) + 1}) _c)")  # fmt: skip
    sql = (
        f"WITH pgrst_source AS ({level.select()}) "
        f"SELECT {total} AS total, pg_catalog.count(_r) AS page_total, "
        "coalesce(json_agg(_r), '[]')::text AS body FROM pgrst_source _r"
    )
    return ReadStatement(sql, params.values, plan)
