"""A parser for the SOQL subset the worker (and a careful human) uses.

The point is to refuse, never to guess: anything outside the subset raises
:class:`SoqlError` with ``MALFORMED_QUERY``, which the emulator answers as Salesforce does
(400, error-list body). A query the emulator half-understood would return a plausible wrong
answer, and tests passing on a wrong answer are worse than no tests.

Subset: ``SELECT f, Rel.f, Rel.Rel.f, (SELECT f, Rel.f FROM ChildRelationship [WHERE cond]
[ORDER BY ...] [LIMIT n]) FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n]``; conditions combine ``AND``/``OR``/``NOT`` and parentheses
over ``= != <> < <= > >=``, ``[NOT] IN (literals)``, ``[NOT] IN (SELECT f FROM Obj [WHERE
cond])`` (semi-joins), and ``LIKE``; literals are strings, numbers, true/false/null, dates and
datetimes. Keywords are case-insensitive, as in SOQL. A parent-to-child subquery names a child
relationship (``OpportunityLineItems``) and nests one level only, as Salesforce allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

Literal = str | float | bool | date | datetime | None


class SoqlError(Exception):
    """A query the emulator refuses; ``code`` is the Salesforce errorCode it answers with."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldPath:
    parts: tuple[str, ...]  # as written; resolution against the schema is the evaluator's job

    def __str__(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Comparison:
    field: FieldPath
    op: str  # one of = != < <= > >=
    value: Literal


@dataclass(frozen=True, slots=True)
class InList:
    field: FieldPath
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class SemiJoin:
    field: FieldPath
    subquery: Query
    negated: bool


@dataclass(frozen=True, slots=True)
class Like:
    field: FieldPath
    pattern: str


@dataclass(frozen=True, slots=True)
class And:
    terms: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Or:
    terms: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    term: Condition


Condition = Comparison | InList | SemiJoin | Like | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderItem:
    field: FieldPath
    descending: bool
    nulls_last: bool


@dataclass(frozen=True, slots=True)
class Query:
    fields: tuple[FieldPath, ...]
    sobject: str
    where: Condition | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    #: Parent-to-child subqueries in SELECT order; each one's ``sobject`` is the child
    #: relationship's name (``OpportunityLineItems``), not an object name.
    children: tuple[Query, ...] = ()


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w-]))
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_KEYWORDS = frozenset(
    {
        "select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc",
        "desc", "nulls", "first", "last", "limit", "true", "false", "null",
    }
)  # fmt: skip
_RESERVED_OUTSIDE_SUBSET = frozenset(
    {"group", "having", "offset", "for", "with", "typeof", "using", "includes", "excludes"}
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # datetime date number string name keyword op punct end
    text: str
    position: int


def tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise SoqlError(f"unexpected character {text[position]!r} at column {position + 1}")
        kind = match.lastgroup or ""
        if kind != "ws":
            value = match.group()
            if kind == "name" and value.lower() in _KEYWORDS:
                kind = "keyword"
            tokens.append(_Token(kind, value, position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def parse(text: str) -> Query:
    """Parse one SOQL statement or raise :class:`SoqlError` (MALFORMED_QUERY)."""
    parser = _Parser(tokenize(text))
    query = parser.query(allow_order=True, allow_children=True)
    parser.expect("end")
    return query


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    # -- token helpers --------------------------------------------------------------------
    def peek(self) -> _Token:
        return self._tokens[self._index]

    def advance(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "keyword" and token.text.lower() in words

    def accept_keyword(self, word: str) -> bool:
        if self.at_keyword(word):
            self._index += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.accept_keyword(word):
            self.fail(f"expected {word.upper()}")

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            self.fail(f"expected {text or kind}")
        return self.advance()

    def fail(self, message: str) -> None:
        token = self.peek()
        found = token.text or "end of query"
        if token.kind == "name" and token.text.lower() in _RESERVED_OUTSIDE_SUBSET:
            message = f"{token.text.upper()} is outside the emulator's SOQL subset"
        raise SoqlError(f"{message}; found {found!r} at column {token.position + 1}")

    # -- grammar --------------------------------------------------------------------------
    def query(self, *, allow_order: bool, allow_children: bool = False) -> Query:
        self.expect_keyword("select")
        fields: list[FieldPath] = []
        children: list[Query] = []
        while True:
            token = self.peek()
            if token.kind == "punct" and token.text == "(":
                if not allow_children:
                    self.fail("a subquery nests one level only, in the outer SELECT")
                self.advance()
                children.append(self.query(allow_order=True))
                self.expect("punct", ")")
            else:
                fields.append(self.field_path())
            if not (self.peek().kind == "punct" and self.peek().text == ","):
                break
            self.advance()
        self.expect_keyword("from")
        sobject = self.expect("name").text
        if "." in sobject:
            self.fail("FROM takes one object name")
        where = None
        if self.accept_keyword("where"):
            where = self.condition()
        order: list[OrderItem] = []
        limit = None
        if allow_order and self.accept_keyword("order"):
            self.expect_keyword("by")
            order.append(self.order_item())
            while self.peek().kind == "punct" and self.peek().text == ",":
                self.advance()
                order.append(self.order_item())
        if allow_order and self.accept_keyword("limit"):
            token = self.expect("number")
            if not token.text.isdigit():
                self.fail("LIMIT takes a non-negative integer")
            limit = int(token.text)
        return Query(tuple(fields), sobject, where, tuple(order), limit, tuple(children))

    def field_path(self) -> FieldPath:
        token = self.peek()
        if token.kind != "name":
            self.fail("expected a field name")
        self.advance()
        if self.peek().kind == "punct" and self.peek().text == "(":
            self.fail("functions are outside the emulator's SOQL subset")
        return FieldPath(tuple(token.text.split(".")))

    def order_item(self) -> OrderItem:
        field = self.field_path()
        descending = False
        if self.accept_keyword("desc"):
            descending = True
        else:
            self.accept_keyword("asc")
        nulls_last = descending  # Salesforce: ASC puts nulls first, DESC puts them last
        if self.accept_keyword("nulls"):
            if self.accept_keyword("last"):
                nulls_last = True
            else:
                self.expect_keyword("first")
                nulls_last = False
        return OrderItem(field, descending, nulls_last)

    def condition(self) -> Condition:
        terms = [self.conjunction()]
        while self.accept_keyword("or"):
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def conjunction(self) -> Condition:
        terms = [self.negation()]
        while self.accept_keyword("and"):
            terms.append(self.negation())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def negation(self) -> Condition:
        if self.accept_keyword("not"):
            return Not(self.negation())
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.advance()
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        return self.predicate()

    def predicate(self) -> Condition:
        field = self.field_path()
        token = self.peek()
        if token.kind == "op":
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return Comparison(field, op, self.literal())
        if self.accept_keyword("like"):
            value = self.literal()
            if isinstance(value, str):
                return Like(field, value)
            self.fail("LIKE takes a string")
        negated = self.accept_keyword("not")
        if self.accept_keyword("in"):
            self.expect("punct", "(")
            if self.at_keyword("select"):
                subquery = self.query(allow_order=False)
                self.expect("punct", ")")
                if len(subquery.fields) != 1:
                    raise SoqlError("a semi-join subquery selects exactly one field")
                return SemiJoin(field, subquery, negated)
            values = [self.literal()]
            while self.peek().kind == "punct" and self.peek().text == ",":
                self.advance()
                values.append(self.literal())
            self.expect("punct", ")")
            return InList(field, tuple(values), negated)
        self.fail("expected an operator, LIKE or IN")
        raise AssertionError("unreachable")

    def literal(self) -> Literal:
        token = self.advance()
        if token.kind == "string":
            return _unescape(token.text[1:-1])
        if token.kind == "number":
            return float(token.text)
        if token.kind == "date":
            try:
                return date.fromisoformat(token.text)
            except ValueError:
                raise SoqlError(f"invalid date literal {token.text!r}") from None
        if token.kind == "datetime":
            return parse_datetime_literal(token.text)
        if token.kind == "keyword" and token.text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text.lower()]
        self._index -= 1
        self.fail("expected a literal value")
        raise AssertionError("unreachable")


def _unescape(body: str) -> str:
    out: list[str] = []
    chars = iter(body)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, "")
        if escaped in _ESCAPES:
            out.append(_ESCAPES[escaped])
        elif escaped in ("\\", "'", '"'):
            out.append(escaped)
        elif escaped in ("%", "_"):
            out.append("\\" + escaped)  # stays escaped for LIKE; a literal char elsewhere
        else:
            raise SoqlError(f"invalid escape sequence \\{escaped} in a string literal")
    return "".join(out)


def parse_datetime_literal(text: str) -> datetime:
    """``2026-01-01T00:00:00Z``, ``...+01:00``, ``...-0800``, optional milliseconds."""
    match = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,3})?(Z|([+-])(\d{2}):?(\d{2}))", text
    )
    if match is None:
        raise SoqlError(f"invalid datetime literal {text!r}")
    try:
        base = datetime.fromisoformat(match.group(1))
    except ValueError:
        raise SoqlError(f"invalid datetime literal {text!r}") from None
    millis = int((match.group(2) or ".0")[1:].ljust(3, "0"))
    if match.group(3) == "Z":
        tz: timezone = UTC
    else:
        offset = timedelta(hours=int(match.group(5)), minutes=int(match.group(6)))
        tz = timezone(offset if match.group(4) == "+" else -offset)
    return base.replace(microsecond=millis * 1000, tzinfo=tz).astimezone(UTC)
