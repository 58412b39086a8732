"""PostgREST's query grammar, parsed into the types below.

``select=alias:col->a->>b::text,*,rel!hint!inner(cols)``, filters ``col=not.op(modifier).value``,
logic trees ``or=(a.eq.1,and(b.gt.2,c.is.null))``, ``order=col.desc.nullslast`` and
``limit``/``offset`` — at the top and on embedded resources (``rel.col=eq.x``,
``rel.order=``, ``rel.limit=``, ``rel.or=``).

A small recursive-descent parser over one string at a time: the grammar is a handful of
productions, the errors must name the position (400 PGRST100) and the hot path parses
``id=eq.<uuid>``, which a parsing library would make slower, not clearer. Nothing here
reads the schema: names are checked by the statement builder (``syntera.rest.query``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qsl

from syntera.rest.errors import RestError, parse_error

# Operators and the SQL they stand for (``query`` renders them).
OPERATORS = frozenset({
    "eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch", "is",
    "isdistinct", "in", "cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj", "fts", "plfts",
    "phfts", "wfts",
})  # fmt: skip
FTS_OPERATORS = frozenset({"fts", "plfts", "phfts", "wfts"})
QUANTIFIABLE = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"}
)
IS_VALUES = frozenset({"null", "not_null", "true", "false", "unknown"})
# PostgREST's aggregates (``count()``, ``amount.sum()``), off unless configured: refused.
AGGREGATES = frozenset({"count", "sum", "avg", "max", "min"})
_NAME_EXTRA = frozenset("_$ ")
_CAST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ []")


@dataclass(frozen=True)
class JsonStep:
    """One ``->key`` (``as_text`` False) or ``->>key`` step of a JSON path."""

    key: str
    as_text: bool


@dataclass(frozen=True)
class Field:
    """A column, and a JSON path into it (``data->a->>b``)."""

    name: str
    path: tuple[JsonStep, ...] = ()

    @property
    def label(self) -> str:
        """The key PostgREST gives it in an answer: the last key of its path, or its name."""
        return self.path[-1].key if self.path else self.name


@dataclass(frozen=True)
class Column:
    """``alias:field::cast`` in ``select``."""

    field: Field
    alias: str | None = None
    cast: str | None = None


@dataclass(frozen=True)
class Star:
    """``*`` in ``select``: every column."""


@dataclass(frozen=True)
class Embed:
    """``alias:name!hint!inner(select)`` (``...name(select)`` spreads a to-one embed)."""

    name: str
    items: tuple[SelectItem, ...]
    alias: str | None = None
    hint: str | None = None
    join: Literal["left", "inner"] = "left"
    spread: bool = False

    @property
    def key(self) -> str:
        """How the embed is named in the answer and in ``key.col=…`` parameters."""
        return self.alias or self.name


SelectItem = Column | Star | Embed


@dataclass(frozen=True)
class Condition:
    """``field=[not.]operator[(modifier)].value``: ``value`` is a string, a tuple for
    ``in``, and the keyword for ``is``; ``modifier`` is ``any``/``all`` or an fts
    configuration."""

    field: Field
    operator: str
    value: str | tuple[str, ...]
    negated: bool = False
    quantifier: Literal["any", "all"] | None = None
    config: str | None = None


@dataclass(frozen=True)
class Logic:
    """``or=(…)`` / ``and=(…)`` / ``not.or=(…)``, nested."""

    operator: Literal["and", "or"]
    children: tuple[Condition | Logic, ...]
    negated: bool = False


Predicate = Condition | Logic


@dataclass(frozen=True)
class OrderTerm:
    """``field[.asc|.desc][.nullsfirst|.nullslast]``; ``embed(field)…`` orders by a
    column of a to-one embed (``embed`` set)."""

    field: Field
    descending: bool = False
    nulls: Literal["first", "last"] | None = None
    embed: str | None = None


EmbedPath = tuple[str, ...]  # () the top, ("deals",) an embed, ("deals", "contacts") ...


@dataclass
class QueryParameters:
    """A request's query string, parsed: ``select`` and, per embed path (``()`` for the
    relation itself), its filters, order, limit and offset. What is not PostgREST's
    grammar for reads (``columns``, ``on_conflict``, an RPC's arguments) is kept raw in
    ``other``."""

    select: tuple[SelectItem, ...] = (Star(),)
    where: dict[EmbedPath, list[Predicate]] = field(default_factory=dict)
    order: dict[EmbedPath, tuple[OrderTerm, ...]] = field(default_factory=dict)
    limit: dict[EmbedPath, int] = field(default_factory=dict)
    offset: dict[EmbedPath, int] = field(default_factory=dict)
    other: dict[str, str] = field(default_factory=dict)
    select_given: bool = False


# Embeds and logic trees nest at most this deep: deeper is refused (400), never a
# recursion error.
MAX_NESTING = 16


class _Text:
    """A cursor over one parameter's text; failures name the position."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.at = 0
        self.what = what
        self.depth = 0

    def enter(self) -> None:
        """One level deeper (an embed's or a logic tree's parentheses)."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise parse_error(
                f"failed to parse {self.what} ({self.text})",
                f"nested more than {MAX_NESTING} levels at position {self.at + 1}, "
                "expecting less nesting",
            )

    def peek(self, count: int = 1) -> str:
        return self.text[self.at : self.at + count]

    def done(self) -> bool:
        return self.at >= len(self.text)

    def take(self, literal: str) -> bool:
        if self.text.startswith(literal, self.at):
            self.at += len(literal)
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.take(literal):
            raise self.fail(f'"{literal}"')

    def spaces(self) -> None:
        while self.peek() in (" ", "\t", "\n"):
            if self.done():
                return
            self.at += 1

    def fail(self, expecting: str) -> RestError:
        found = (
            f'unexpected "{self.text[self.at]}"' if not self.done() else "unexpected end of input"
        )
        return parse_error(
            f"failed to parse {self.what} ({self.text})",
            f"{found} at position {self.at + 1}, expecting {expecting}",
        )

    def name(self) -> str:
        """A field name: letters, digits, ``_``, ``$`` (spaces inside), or ``"quoted"``."""
        if self.take('"'):
            start = self.at
            end = self.text.find('"', start)
            if end < 0:
                self.at = len(self.text)
                raise self.fail('a closing "')
            if any(ord(char) < 0x20 for char in self.text[start:end]):
                self.at = start
                raise self.fail("a name without control characters")
            self.at = end + 1
            if end == start:
                raise self.fail("a name")
            return self.text[start:end]
        start = self.at
        while not self.done():
            char = self.text[self.at]
            if char.isalnum() or char in _NAME_EXTRA or (char == "-" and self.peek(2) != "->"):
                self.at += 1
            else:
                break
        name = self.text[start : self.at].strip()
        if not name:
            self.at = start
            raise self.fail("a name")
        return name

    def json_path(self) -> tuple[JsonStep, ...]:
        steps: list[JsonStep] = []
        while self.peek(2) == "->":
            as_text = self.take("->>")
            if not as_text:
                self.at += 2
            steps.append(JsonStep(self.name(), as_text))
        return tuple(steps)

    def field(self) -> Field:
        return Field(self.name(), self.json_path())


# A cast names a type: one word (``text``, ``int4``, ``uuid``, ``my_type``) or one of
# SQL's few multi-word type names, either maybe an array (``[]``). It is written into the
# statement as it is (a type cannot be a bound value), so nothing else may pass.
_ONE_WORD_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MULTI_WORD_TYPES = frozenset({
    "double precision", "character varying", "bit varying", "timestamp with time zone",
    "timestamp without time zone", "time with time zone", "time without time zone",
})  # fmt: skip


def _cast(text: _Text) -> str | None:
    if not text.take("::"):
        return None
    start = text.at
    while not text.done() and text.text[text.at] in _CAST_CHARS:
        text.at += 1
    cast = text.text[start : text.at].strip()
    base = cast.removesuffix("[]").rstrip()
    words = " ".join(base.lower().split())
    if not (_ONE_WORD_TYPE.fullmatch(base) or words in _MULTI_WORD_TYPES):
        text.at = start
        raise text.fail("a type name")
    return cast if _ONE_WORD_TYPE.fullmatch(base) else words + cast[len(base) :].strip()


@lru_cache(maxsize=1024)
def parse_select(value: str) -> tuple[SelectItem, ...]:
    """``select=``'s items (cached: clients send the same few strings again and again)."""
    text = _Text(value, "select parameter")
    text.spaces()
    if text.done():
        return (Star(),)
    items = _select_items(text)
    if not text.done():
        raise text.fail('"," or end of input')
    return items


def _select_items(text: _Text) -> tuple[SelectItem, ...]:
    items = [_select_item(text)]
    text.spaces()
    while text.take(","):
        text.spaces()
        items.append(_select_item(text))
        text.spaces()
    return tuple(items)


def _select_item(text: _Text) -> SelectItem:
    if text.take("*"):
        return Star()
    spread = text.take("...")
    start = text.at
    first = text.name()
    alias: str | None = None
    if text.peek() == ":" and text.peek(2) != "::":
        text.at += 1
        alias = first
        text.spaces()
        start = text.at
        first = text.name()
    if text.peek() in ("!", "("):
        return _embed(text, first, alias, spread)
    if spread:
        raise text.fail('"(" (only embedded resources can be spread)')
    text.at = start
    column = text.field()
    return Column(column, alias, _cast(text))


def _embed(text: _Text, name: str, alias: str | None, spread: bool) -> Embed:
    hint: str | None = None
    join: Literal["left", "inner"] = "left"
    while text.take("!"):
        mark = text.name()
        if mark in ("inner", "left"):
            join = "inner" if mark == "inner" else "left"
        elif hint is None:
            hint = mark
        else:
            raise text.fail('"inner", "left" or "("')
    text.expect("(")
    if text.peek() == ")" and hint is None and name in AGGREGATES:
        raise RestError(400, "PGRST123", "Use of aggregate functions is not allowed")
    text.enter()
    text.spaces()
    items: tuple[SelectItem, ...] = (Star(),) if text.peek() == ")" else _select_items(text)
    text.expect(")")
    text.depth -= 1
    return Embed(name, items, alias, hint, join, spread)


def parse_condition(field_text: str, value: str) -> Condition:
    """A filter ``field=value`` (``value`` is ``[not.]operator[(modifier)].operand``)."""
    text = _Text(field_text, "filter")
    parsed = text.field()
    if not text.done():
        raise text.fail('"->", "->>" or end of input')
    return _operation(parsed, _Text(value, "filter"))


def _operation(parsed: Field, text: _Text) -> Condition:
    negated = text.take("not.")
    start = text.at
    while not text.done() and text.text[text.at].isalpha():
        text.at += 1
    operator = text.text[start : text.at]
    if operator not in OPERATORS:
        text.at = start
        raise text.fail("an operator (eq, neq, gt, gte, lt, lte, like, ilike, match, imatch, "
                        "is, isdistinct, in, cs, cd, ov, fts, plfts, phfts, wfts)")  # fmt: skip
    quantifier: Literal["any", "all"] | None = None
    config: str | None = None
    if text.take("("):
        if operator in FTS_OPERATORS:
            config = text.name()
        elif operator in QUANTIFIABLE:
            mark = text.name()
            if mark not in ("any", "all"):
                raise text.fail('"any" or "all"')
            quantifier = "any" if mark == "any" else "all"
        else:
            raise text.fail('"."')
        text.expect(")")
    text.expect(".")
    operand = text.text[text.at :]
    if operator == "in" or (quantifier is not None and operand.startswith("(")):
        return Condition(parsed, operator, _list(text), negated, quantifier, config)
    if operator == "is":
        if operand.lower() not in IS_VALUES:
            raise text.fail("null, not_null, true, false or unknown")
        return Condition(parsed, operator, operand.lower(), negated)
    return Condition(parsed, operator, operand, negated, quantifier, config)


def _list(text: _Text) -> tuple[str, ...]:
    """``(a,"b,c",d)``: the items, quotes removed (``\\"`` inside quotes escapes)."""
    text.expect("(")
    items: list[str] = []
    if text.take(")"):
        _end(text)
        return ()
    while True:
        items.append(_item(text, ",)"))
        if text.take(")"):
            _end(text)
            return tuple(items)
        text.expect(",")


def _end(text: _Text) -> None:
    if not text.done():
        raise text.fail("end of input")


def _item(text: _Text, stops: str) -> str:
    if text.take('"'):
        chars: list[str] = []
        while not text.done():
            char = text.text[text.at]
            text.at += 1
            if char == "\\" and not text.done():
                chars.append(text.text[text.at])
                text.at += 1
            elif char == '"':
                return "".join(chars)
            else:
                chars.append(char)
        raise text.fail('a closing "')
    start = text.at
    while not text.done() and text.text[text.at] not in stops:
        text.at += 1
    return text.text[start : text.at]


def parse_logic(key: str, value: str) -> Logic:
    """``or=(…)``, ``and=(…)``, ``not.or=(…)`` (``key`` without its embed path)."""
    negated = key.startswith("not.")
    operator = key.removeprefix("not.")
    text = _Text(value, "logic tree")
    tree = _tree(text, "or" if operator == "or" else "and", negated)
    _end(text)
    return tree


def _tree(text: _Text, operator: Literal["and", "or"], negated: bool) -> Logic:
    text.expect("(")
    text.enter()
    children: list[Predicate] = []
    while True:
        text.spaces()
        children.append(_logic_member(text))
        text.spaces()
        if text.take(")"):
            text.depth -= 1
            return Logic(operator, tuple(children), negated)
        text.expect(",")


def _logic_member(text: _Text) -> Predicate:
    negated = text.take("not.")
    for operator in ("and", "or"):
        if text.peek(len(operator) + 1) == f"{operator}(":
            text.at += len(operator)
            return _tree(text, "or" if operator == "or" else "and", negated)
    if negated:
        text.at -= len("not.")
    parsed = text.field()
    text.expect(".")
    # The operation runs to the "," or ")" that ends it, outside quotes and parentheses.
    start = text.at
    depth = 0
    quoted = False
    while not text.done():
        char = text.text[text.at]
        if quoted:
            if char == "\\":
                text.at += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            break
        text.at += 1
    operation = _Text(text.text[start : text.at], "logic tree")
    try:
        condition = _operation(parsed, operation)
    except RestError as error:
        error.message = f"failed to parse logic tree ({text.text})"
        error.details = _shifted(error.details, start)
        raise
    if isinstance(condition.value, str) and condition.operator != "is":
        condition = Condition(
            condition.field,
            condition.operator,
            _unquoted(condition.value),
            condition.negated,
            condition.quantifier,
            condition.config,
        )
    return condition


def _shifted(details: object, offset: int) -> object:
    """An error's "at position N" within a member, as a position in the whole tree."""
    if not isinstance(details, str) or " at position " not in details:
        return details
    head, _, tail = details.partition(" at position ")
    number, _, rest = tail.partition(",")
    return f"{head} at position {int(number) + offset},{rest}" if number.isdigit() else details


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


@lru_cache(maxsize=1024)
def parse_order(value: str) -> tuple[OrderTerm, ...]:
    """``order=``'s terms."""
    text = _Text(value, "order")
    terms: list[OrderTerm] = []
    while True:
        text.spaces()
        parsed = text.field()
        embed: str | None = None
        if not parsed.path and text.take("("):
            embed, parsed = parsed.name, text.field()
            text.expect(")")
        descending = False
        nulls: Literal["first", "last"] | None = None
        while text.take("."):
            start = text.at
            word = ""
            while not text.done() and text.text[text.at].isalpha():
                word += text.text[text.at]
                text.at += 1
            if word in ("asc", "desc"):
                descending = word == "desc"
            elif word in ("nullsfirst", "nullslast"):
                nulls = "first" if word == "nullsfirst" else "last"
            else:
                text.at = start
                raise text.fail("asc, desc, nullsfirst or nullslast")
        terms.append(OrderTerm(parsed, descending, nulls, embed))
        text.spaces()
        if text.done():
            return tuple(terms)
        text.expect(",")


# At most 18 digits: a count that still fits PostgreSQL's bigint (int() of thousands
# of digits raises, too).
MAX_DIGITS = 18


def _count(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
        if name.endswith("limit") and value.startswith("-") and value[1:].isdigit():
            raise RestError(416, "PGRST103", "Requested range not satisfiable",
                            "Limit should be greater than or equal to zero.")  # fmt: skip
        raise parse_error(
            f"failed to parse {name.rpartition('.')[2]} parameter ({value})",
            "unexpected input at position 1, expecting a non-negative integer",
        )
    return int(value)


def _embed_path(key: str) -> tuple[EmbedPath, str]:
    """``deals.contacts.name`` -> (("deals", "contacts"), "name"); dots inside a JSON path
    (after ``->``) stay in the last part."""
    head, arrow, tail = key.partition("->")
    parts = head.split(".")
    last = parts[-1] + arrow + tail
    # not.or / not.and keep their "not."
    if len(parts) >= 2 and parts[-2] == "not" and parts[-1] in ("or", "and"):
        return tuple(parts[:-2]), "not." + parts[-1]
    return tuple(parts[:-1]), last


def parse_query(query_string: str, *, arguments: frozenset[str] = frozenset()) -> QueryParameters:
    """Every parameter of a query string; the top-level keys in ``arguments`` (an RPC's
    arguments) are kept raw in ``other``, not read as filters."""
    parsed = QueryParameters()
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        if key == "select":
            parsed.select = parse_select(value)
            parsed.select_given = True
            continue
        if key in ("columns", "on_conflict"):
            parsed.other[key] = value
            continue
        path, last = _embed_path(key)
        if last == "order":
            parsed.order[path] = parse_order(value)
        elif last in ("limit", "offset"):
            (parsed.limit if last == "limit" else parsed.offset)[path] = _count(key, value)
        elif last in ("or", "and", "not.or", "not.and"):
            parsed.where.setdefault(path, []).append(parse_logic(last, value))
        elif not path and key in arguments:
            parsed.other[key] = value
        else:
            parsed.where.setdefault(path, []).append(parse_condition(last, value))
    return parsed
