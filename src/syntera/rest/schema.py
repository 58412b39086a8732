"""The schema cache: the exposed schemas' tables, views, columns, keys, relationships,
functions and privileges, read from ``pg_catalog`` — never hard-coded — and read again
on ``NOTIFY pgrst, 'reload schema'`` (PostgREST's channel and payload; ``syntera
migrate`` sends it after applying migrations).

Every identifier a request names is looked up here before it reaches SQL, and quoted
there: a name the cache does not hold never becomes part of a statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from syntera.db.postgres import TenantConnection
from syntera.rest.errors import RestError, column_not_found, table_not_found

log = logging.getLogger(__name__)

CHANNEL = "pgrst"
# Unique across the process's schema caches: statements are cached by generation.
_GENERATIONS = itertools.count(1)
Cardinality = Literal["many-to-one", "one-to-many", "one-to-one", "many-to-many"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): "uuid", "text", "timestamp with time zone", ...
    nullable: bool
    default: str | None


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of ``schema.table`` (``columns``) to ``foreign_schema.foreign_table``
    (``foreign_columns``), in the order of the constraint."""

    constraint: str
    schema: str
    table: str
    columns: tuple[str, ...]
    foreign_schema: str
    foreign_table: str
    foreign_columns: tuple[str, ...]


@dataclass(frozen=True)
class Relationship:
    """How rows of ``table`` reach rows of ``foreign_table``: ``columns`` of the former
    equal ``foreign_columns`` of the latter."""

    constraint: str
    schema: str
    table: str
    columns: tuple[str, ...]
    foreign_table: str
    foreign_columns: tuple[str, ...]
    cardinality: Cardinality
    # Many-to-many: through ``junction``, whose ``junction_columns`` equal ``columns`` of
    # ``table`` (its key ``constraint``) and whose ``junction_foreign_columns`` equal
    # ``foreign_columns`` of ``foreign_table`` (its key ``junction_constraint``).
    junction: str | None = None
    junction_columns: tuple[str, ...] = ()
    junction_foreign_columns: tuple[str, ...] = ()
    junction_constraint: str = ""

    @property
    def to_one(self) -> bool:
        return self.cardinality in ("many-to-one", "one-to-one")

    def described(self) -> dict[str, str]:
        """PostgREST's description of the relationship, in an ambiguity's details."""
        if self.junction is not None:
            relationship = (
                f"{self.junction} using {self.constraint}({', '.join(self.junction_columns)})"
                f" and {self.junction_constraint}({', '.join(self.junction_foreign_columns)})"
            )
        else:
            relationship = (
                f"{self.constraint} using {self.table}({', '.join(self.columns)})"
                f" and {self.foreign_table}({', '.join(self.foreign_columns)})"
            )
        return {
            "cardinality": self.cardinality,
            "embedding": f"{self.table} with {self.foreign_table}",
            "relationship": relationship,
        }


@dataclass
class Relation:
    """A table, view, materialized view or foreign table of an exposed schema."""

    schema: str
    name: str
    kind: str  # pg_class.relkind
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()
    unique: list[tuple[str, ...]] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    # (grantee, privilege): ("anon", "SELECT"), ("PUBLIC", "SELECT"), ...
    privileges: frozenset[tuple[str, str]] = frozenset()
    # Computed columns: functions of its exposed schema taking its row (and nothing
    # else without a default) and returning one value, by name: "fn" for "schema"."fn".
    computed: dict[str, str] = field(default_factory=dict)

    @property
    def is_table(self) -> bool:
        return self.kind in ("r", "p")

    def column(self, name: str) -> Column:
        """The column ``name``; 400 (PostgreSQL's 42703) if there is none."""
        try:
            return self.columns[name]
        except KeyError:
            raise column_not_found(self.name, name) from None

    def is_unique(self, columns: Iterable[str]) -> bool:
        wanted = set(columns)
        keys = [self.primary_key, *self.unique] if self.primary_key else self.unique
        return any(key and set(key) <= wanted for key in keys)


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    mode: str  # i, o, b, v, t (pg_proc.proargmodes)
    has_default: bool


@dataclass(frozen=True)
class Function:
    """A function of an exposed schema, for /rest/v1/rpc."""

    schema: str
    name: str
    oid: int
    parameters: tuple[Parameter, ...]
    volatility: Literal["i", "s", "v"]  # immutable, stable, volatile
    returns_set: bool
    return_type: str
    # The table or view whose rows it returns (RETURNS SETOF table), if any.
    return_relation: tuple[str, str] | None


@dataclass
class SchemaCache:
    """Everything /rest/v1 knows of the database; ``generation`` grows at each reload
    (statements cached per shape are keyed by it)."""

    schemas: tuple[str, ...]
    relations: dict[tuple[str, str], Relation]
    functions: dict[tuple[str, str], list[Function]]
    generation: int = 0

    def relation(self, schema: str, name: str) -> Relation:
        """The table or view ``schema.name``; 404 PGRST205 if the cache has none."""
        found = self.relations.get((schema, name))
        if found is None:
            names = [n for s, n in self.relations if s == schema]
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
            hint = f"Perhaps you meant the table '{schema}.{close[0]}'" if close else None
            raise table_not_found(schema, name, hint)
        return found

    def relationships(self, origin: Relation, target: str, hint: str | None) -> list[Relationship]:
        """The relationships by which ``origin`` embeds ``target`` (a table or view of its
        schema, or a foreign key's column or constraint name), narrowed by the embed's
        ``hint`` (a constraint or column name)."""
        found: list[Relationship] = []
        for key in origin.foreign_keys:  # origin -> target: many-to-one
            if key.foreign_schema != origin.schema:
                continue
            names = (key.foreign_table, key.constraint, *(key.columns[-1:]))
            if target in names:
                one = origin.is_unique(key.columns)
                found.append(Relationship(key.constraint, origin.schema, origin.name, key.columns,
                                          key.foreign_table, key.foreign_columns,
                                          "one-to-one" if one else "many-to-one"))  # fmt: skip
        other = self.relations.get((origin.schema, target))
        if other is not None:
            for key in other.foreign_keys:  # target -> origin: one-to-many
                if key.foreign_schema == origin.schema and key.foreign_table == origin.name:
                    one = other.is_unique(key.columns)
                    found.append(Relationship(
                        key.constraint, origin.schema, origin.name, key.foreign_columns,
                        other.name, key.columns, "one-to-one" if one else "one-to-many",
                    ))  # fmt: skip
            found += self._many_to_many(origin, other)
        if other is None and any(self._is_table(r) for r in found):
            # Named by a column or constraint: a table's key, not its copies on views.
            found = [r for r in found if self._is_table(r)]
        if hint is not None:
            found = [
                r for r in found
                if hint in (r.constraint, r.foreign_table, r.junction) or hint in r.columns
                or hint in r.foreign_columns
            ]  # fmt: skip
        unique: dict[tuple[str, str, Cardinality, str | None], Relationship] = {}
        for relationship in found:
            unique.setdefault(
                (relationship.constraint, relationship.foreign_table, relationship.cardinality,
                 relationship.junction),
                relationship,
            )  # fmt: skip
        return list(unique.values())

    def _many_to_many(self, origin: Relation, target: Relation) -> list[Relationship]:
        """``origin`` to ``target`` through each junction table: one with a foreign key to
        each, both keys' columns in its primary key (PostgREST's rule)."""
        found: list[Relationship] = []
        for (schema, _), junction in self.relations.items():
            if schema != origin.schema or not junction.is_table or not junction.primary_key:
                continue
            if junction.name in (origin.name, target.name):
                continue
            primary = set(junction.primary_key)
            for mine in junction.foreign_keys:
                if (mine.foreign_schema, mine.foreign_table) != (origin.schema, origin.name):
                    continue
                for theirs in junction.foreign_keys:
                    if theirs is mine or (theirs.foreign_schema, theirs.foreign_table) != (
                        target.schema, target.name
                    ):  # fmt: skip
                        continue
                    if not set(mine.columns) | set(theirs.columns) <= primary:
                        continue
                    found.append(Relationship(
                        mine.constraint, origin.schema, origin.name, mine.foreign_columns,
                        target.name, theirs.foreign_columns, "many-to-many", junction.name,
                        mine.columns, theirs.columns, theirs.constraint,
                    ))  # fmt: skip
        return found

    def _is_table(self, relationship: Relationship) -> bool:
        target = self.relations.get((relationship.schema, relationship.foreign_table))
        return target is not None and target.is_table


RELATIONS = """
SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind,
       coalesce(
         (SELECT json_agg(json_build_object(
                   'name', a.attname,
                   'type', format_type(a.atttypid, a.atttypmod),
                   'nullable', NOT a.attnotnull,
                   'default', pg_get_expr(d.adbin, d.adrelid)) ORDER BY a.attnum)
            FROM pg_attribute a
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         '[]') AS columns,
       coalesce(
         (SELECT json_agg(json_build_array(coalesce(r.rolname, 'PUBLIC'), acl.privilege_type))
            FROM aclexplode(c.relacl) acl
            LEFT JOIN pg_roles r ON r.oid = acl.grantee),
         '[]') AS privileges
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

# Keys with their columns in the constraint's order (unnest ... WITH ORDINALITY).
CONSTRAINTS = """
SELECT con.conname AS name, con.contype AS type,
       n.nspname AS schema, c.relname AS table,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
              ORDER BY k.i) AS columns,
       fn.nspname AS foreign_schema, fc.relname AS foreign_table,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, i)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
              ORDER BY k.i) AS foreign_columns
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class fc ON fc.oid = con.confrelid
  LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
 WHERE con.contype IN ('p', 'u', 'f') AND n.nspname = ANY(%(schemas)s)
 ORDER BY con.conname
"""

# The base-table columns each view of the exposed schemas reads (its rewrite rule's
# dependencies): a view column of the same name as exactly one of them is taken to be it,
# so that foreign keys reach views as PostgREST's view lineage lets them (a renamed or
# computed column has none).
VIEW_COLUMNS = """
SELECT DISTINCT vn.nspname AS schema, v.relname AS view, tn.nspname AS table_schema,
       t.relname AS table, a.attname AS column
  FROM pg_rewrite r
  JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
  JOIN pg_namespace vn ON vn.oid = v.relnamespace
  JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
  JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid AND t.relkind IN ('r', 'p')
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE vn.nspname = ANY(%(schemas)s)
"""

FUNCTIONS = """
SELECT n.nspname AS schema, p.proname AS name, p.oid::int8 AS oid,
       p.provolatile AS volatility, p.proretset AS returns_set,
       format_type(p.prorettype, NULL) AS return_type,
       rn.nspname AS return_schema, rc.relname AS return_table,
       coalesce(p.proargnames, '{}') AS arg_names,
       coalesce(p.proargmodes::text[], '{}') AS arg_modes,
       ARRAY(SELECT format_type(t.oid, NULL)
               FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]))
                    WITH ORDINALITY u(type_oid, i)
               JOIN pg_type t ON t.oid = u.type_oid
              ORDER BY u.i) AS arg_types,
       p.pronargs AS input_count, p.pronargdefaults AS default_count,
       fn.nspname AS row_schema, fc.relname AS row_table
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_type rt ON rt.oid = p.prorettype
  LEFT JOIN pg_class rc ON rc.oid = rt.typrelid AND rc.relkind IN ('r', 'p', 'v', 'm', 'f')
  LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
  LEFT JOIN pg_type ft ON p.pronargs > 0 AND ft.oid = p.proargtypes[0]
  LEFT JOIN pg_class fc ON fc.oid = ft.typrelid AND fc.relkind IN ('r', 'p', 'v', 'm', 'f')
  LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND p.prokind = 'f'
"""


async def read_schema(conn: TenantConnection, schemas: list[str], generation: int) -> SchemaCache:
    """Read the schema cache of ``schemas`` from ``pg_catalog`` on ``conn``."""
    params = {"schemas": schemas}
    relations: dict[tuple[str, str], Relation] = {}
    for row in await (await conn.execute(RELATIONS, params)).fetchall():
        described = {c["name"]: Column(c["name"], c["type"], c["nullable"], c["default"])
                     for c in row["columns"]}  # fmt: skip
        privileges = frozenset((grantee, kind) for grantee, kind in row["privileges"])
        relations[(row["schema"], row["name"])] = Relation(
            row["schema"], row["name"], row["kind"], described, privileges=privileges
        )
    for row in await (await conn.execute(CONSTRAINTS, params)).fetchall():
        relation = relations.get((row["schema"], row["table"]))
        if relation is None:
            continue
        columns = tuple(row["columns"])
        if row["type"] == "p":
            relation.primary_key = columns
        elif row["type"] == "u":
            relation.unique.append(columns)
        elif row["foreign_table"] is not None:
            relation.foreign_keys.append(ForeignKey(
                row["name"], row["schema"], row["table"], columns, row["foreign_schema"],
                row["foreign_table"], tuple(row["foreign_columns"]),
            ))  # fmt: skip
    _view_lineage(relations, await (await conn.execute(VIEW_COLUMNS, params)).fetchall())
    functions: dict[tuple[str, str], list[Function]] = {}
    for row in await (await conn.execute(FUNCTIONS, params)).fetchall():
        functions.setdefault((row["schema"], row["name"]), []).append(_function(row))
        _computed_column(relations, row)
    return SchemaCache(tuple(schemas), relations, functions, generation)


def _view_lineage(relations: dict[tuple[str, str], Relation], rows: list[Any]) -> None:
    """Give views the keys of the tables their columns come from: the primary key and
    foreign keys whose columns the view shows under the same names, and the foreign
    keys of other relations that point at them."""
    sources: dict[tuple[str, str], dict[str, set[tuple[str, str]]]] = {}
    for row in rows:
        by_name = sources.setdefault((row["schema"], row["view"]), {})
        by_name.setdefault(row["column"], set()).add((row["table_schema"], row["table"]))
    originals = {key: list(relation.foreign_keys) for key, relation in relations.items()}
    for key, by_name in sources.items():
        view = relations.get(key)
        if view is None:
            continue
        # Each base table, and the view columns that are its columns.
        tables: dict[tuple[str, str], set[str]] = {}
        for name, owners in by_name.items():
            if name in view.columns and len(owners) == 1:
                tables.setdefault(next(iter(owners)), set()).add(name)
        for table_key, shown in tables.items():
            table = relations.get(table_key)
            if table is None:
                continue
            if table.primary_key and set(table.primary_key) <= shown and not view.primary_key:
                view.primary_key = table.primary_key
            for fk in originals.get(table_key, []):
                if set(fk.columns) <= shown:
                    view.foreign_keys.append(ForeignKey(
                        fk.constraint, view.schema, view.name, fk.columns, fk.foreign_schema,
                        fk.foreign_table, fk.foreign_columns,
                    ))  # fmt: skip
            for other_key, keys in originals.items():
                for fk in keys:
                    if (fk.foreign_schema, fk.foreign_table) == table_key and set(
                        fk.foreign_columns
                    ) <= shown:
                        relations[other_key].foreign_keys.append(ForeignKey(
                            fk.constraint, fk.schema, fk.table, fk.columns, view.schema,
                            view.name, fk.foreign_columns,
                        ))  # fmt: skip


def _computed_column(relations: dict[tuple[str, str], Relation], row: dict[str, Any]) -> None:
    """Note the function of ``row`` as a computed column of the relation whose row is its
    first argument (PostgREST's rule: in the relation's schema, one value returned, every
    other argument defaulted; a real column of the same name wins)."""
    relation = relations.get((row["row_schema"], row["row_table"]))
    if (
        relation is None
        or row["schema"] != relation.schema
        or row["returns_set"]
        or row["return_table"] is not None
        or row["return_type"] in ("void", "record")
        or row["input_count"] - row["default_count"] > 1
        or row["name"] in relation.columns
        or any(mode != "i" for mode in row["arg_modes"] or ())
    ):
        return
    relation.computed[row["name"]] = row["name"]


def _function(row: dict[str, Any]) -> Function:
    types: list[str] = row["arg_types"]
    names: list[str] = row["arg_names"]
    modes: list[str] = row["arg_modes"] or ["i"] * len(types)
    inputs = [index for index, mode in enumerate(modes) if mode in ("i", "b", "v")]
    # The last pronargdefaults input parameters have defaults.
    defaulted = set(inputs[len(inputs) - row["default_count"] :]) if row["default_count"] else set()
    parameters = tuple(
        Parameter(names[i] if i < len(names) else "", types[i], modes[i], i in defaulted)
        for i in range(len(types))
    )
    returned = (row["return_schema"], row["return_table"]) if row["return_table"] else None
    return Function(row["schema"], row["name"], row["oid"], parameters, row["volatility"],
                    row["returns_set"], row["return_type"], returned)  # fmt: skip


class SchemaHolder:
    """The process's current schema cache, replaced whole at each reload."""

    def __init__(self, pool: AsyncConnectionPool[TenantConnection], schemas: list[str]) -> None:
        self.pool = pool
        self.schemas = schemas
        self._current: SchemaCache | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> SchemaCache:
        """The schema cache, read now if it never was (503 PGRST002 if that fails)."""
        if self._current is None:
            await self.reload()
        assert self._current is not None
        return self._current

    async def reload(self) -> SchemaCache:
        """Read the schema cache again."""
        async with self._lock:
            try:
                async with self.pool.connection() as conn:
                    cache = await read_schema(conn, self.schemas, next(_GENERATIONS))
            except psycopg.Error as error:
                log.warning("the /rest/v1 schema cache could not be read: %s", error)
                if self._current is not None:
                    return self._current
                raise RestError(
                    503, "PGRST002", "Could not query the database for the schema cache. Retrying."
                ) from error
            self._current = cache
            return cache

    async def listen(self, conninfo: str, stop: asyncio.Event) -> None:
        """Reload on ``NOTIFY pgrst, 'reload schema'`` (or an empty payload, as PostgREST)
        until ``stop``; a lost connection is made again, and the cache read again (a
        notification may have been missed meanwhile)."""
        delay = 0.5
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, row_factory=dict_row
                )
            except psycopg.Error as error:
                log.warning("/rest/v1 cannot listen for schema reloads: %s", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30)
                continue
            delay = 0.5
            try:
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # Read now: at start, and after a lost connection (a reload may
                    # have been missed meanwhile).
                    with contextlib.suppress(RestError):
                        await self.reload()
                    await self._wait_for_reloads(conn, stop)
            except psycopg.Error as error:
                log.warning("/rest/v1 schema listener lost its connection: %s", error)

    async def _wait_for_reloads(
        self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event
    ) -> None:
        stopping = asyncio.create_task(stop.wait())
        try:
            generator = conn.notifies()
            while True:
                notified = asyncio.ensure_future(anext(generator))
                done, _ = await asyncio.wait({notified, stopping}, return_when="FIRST_COMPLETED")
                if stopping in done:
                    notified.cancel()
                    return
                notify = notified.result()
                if notify.payload in ("", "reload schema"):
                    await self.reload()
        finally:
            stopping.cancel()
