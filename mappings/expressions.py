"""The mapping's small expression language: values and conditions, parsed, never eval'd.

Why a language at all: every company keeps billing facts in different Salesforce fields, and
operators must be able to say where without touching code. Why this small: each construct is a
pydantic model with one key, so a mapping file can only name record fields, literals and the
handful of functions below. There is no eval, no import, no attribute access; a ``format``
template is parsed into literal text and field paths at load time and filled in by us, never
by ``str.format`` (whose ``{0.__class__}`` syntax reaches into Python objects).

Values (each a one-key mapping in YAML)::

    {field: Account.Name}            a field path on the Opportunity; relationships nest
    {literal: aws_marketplace}       a constant (string, number, boolean or null)
    {lower: EXPR} / {strip: EXPR}    text functions; absent stays absent
    {default: [EXPR, EXPR, ...]}     the first that is present and not empty
    {format: "sf-{Account.Id}"}      a template; absent if any field it names is absent

Conditions::

    {equals: {field: PATH, value: LITERAL}}
    {in: {field: PATH, values: [LITERAL, ...]}}
    {present: PATH}                  not null, not empty, not only whitespace
    {all: [COND, ...]} / {any: [COND, ...]}
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from mappings.records import NotAScalarError, Scalar, get_scalar, to_text

#: SOQL allows at most five relationship hops in one path (Contact.Account.Owner.Manager...).
MAX_RELATIONSHIP_HOPS = 5
_SEGMENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Names that are relationships, never fields: ending a path on one selects a whole object.
_RELATIONSHIP_NAMES = {"account", "parent", "owner", "createdby", "lastmodifiedby"}


@cache
def path_segments(path: str) -> tuple[str, ...]:
    """Split a field path; raise ``ValueError`` if it is not a plain SOQL field path."""
    segments = tuple(path.split("."))
    for segment in segments:
        if _SEGMENT_RE.fullmatch(segment) is None:
            raise ValueError(
                f"{path!r} is not a field path (letters, digits and _ separated by dots)"
            )
    if len(segments) - 1 > MAX_RELATIONSHIP_HOPS:
        raise ValueError(
            f"{path!r} has {len(segments) - 1} relationship hops; SOQL allows at most "
            f"{MAX_RELATIONSHIP_HOPS}"
        )
    for segment in segments[:-1]:
        if segment.lower().endswith("__c"):
            raise ValueError(f"{path!r}: {segment} is a custom field, not a relationship (use __r)")
    last = segments[-1]
    if last.lower() in _RELATIONSHIP_NAMES or last.lower().endswith("__r"):
        raise ValueError(f"{path!r} ends on a relationship; name a field such as {path}.Id")
    return segments


def _check_path(path: str) -> str:
    path_segments(path)
    return path


FieldPath = Annotated[str, AfterValidator(_check_path)]


class _Node(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=False)


# ---------------------------------------------------------------------------- values


def _read(path: str, record: dict[str, Any]) -> Scalar:
    """The field's value; an empty string is absent, like null (Salesforce sends both)."""
    try:
        value = get_scalar(record, path_segments(path))
    except NotAScalarError as exc:
        raise NotAScalarError(f"{path}: {exc}") from None
    return None if value == "" else value


class FieldExpr(_Node):
    field: FieldPath

    def evaluate(self, record: dict[str, Any]) -> Scalar:
        return _read(self.field, record)

    def paths(self) -> Iterator[str]:
        yield self.field


class LiteralExpr(_Node):
    literal: str | bool | int | float | None

    def evaluate(self, record: dict[str, Any]) -> Scalar:
        return self.literal

    def paths(self) -> Iterator[str]:
        yield from ()


class LowerExpr(_Node):
    lower: Expr

    def evaluate(self, record: dict[str, Any]) -> Scalar:
        text = to_text(self.lower.evaluate(record))
        return None if text is None else text.lower()

    def paths(self) -> Iterator[str]:
        yield from self.lower.paths()


class StripExpr(_Node):
    strip: Expr

    def evaluate(self, record: dict[str, Any]) -> Scalar:
        text = to_text(self.strip.evaluate(record))
        return (text.strip() or None) if text is not None else None

    def paths(self) -> Iterator[str]:
        yield from self.strip.paths()


class DefaultExpr(_Node):
    default: list[Expr] = Field(min_length=2)

    def evaluate(self, record: dict[str, Any]) -> Scalar:
        for option in self.default:
            value = option.evaluate(record)
            if value is not None and value != "":
                return value
        return None

    def paths(self) -> Iterator[str]:
        for option in self.default:
            yield from option.paths()


@cache
def parse_template(template: str) -> tuple[tuple[str, str | None], ...]:
    """``(literal text, field path or None)`` pieces; ``ValueError`` for anything but fields.

    Conversions (``!r``) and format specs (``:>10``) are refused: they are not needed to build
    an alias, and refusing them keeps the template a pure substitution.
    """
    pieces: list[tuple[str, str | None]] = []
    for text, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            pieces.append((text, None))
            continue
        if conversion is not None or spec:
            raise ValueError(f"template field {{{name}}} may not use ! or : (no conversions)")
        if name == "":
            raise ValueError("empty {} in template; name a field path such as {Account.Id}")
        path_segments(name)
        pieces.append((text, name))
    return tuple(pieces)


def _check_template(template: str) -> str:
    parse_template(template)
    return template


class FormatExpr(_Node):
    format: Annotated[str, AfterValidator(_check_template)]

    def evaluate(self, record: dict[str, Any]) -> Scalar:
        out: list[str] = []
        for text, path in parse_template(self.format):
            out.append(text)
            if path is not None:
                value = to_text(_read(path, record))
                if value is None:
                    return None
                out.append(value)
        return "".join(out) or None

    def paths(self) -> Iterator[str]:
        for _, path in parse_template(self.format):
            if path is not None:
                yield path


def _only_key(value: Any) -> str | None:
    """The discriminator: a node is a mapping with exactly one key, the construct's name."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields)).rstrip("_")
    return None


Expr = Annotated[
    Annotated[FieldExpr, Tag("field")]
    | Annotated[LiteralExpr, Tag("literal")]
    | Annotated[LowerExpr, Tag("lower")]
    | Annotated[StripExpr, Tag("strip")]
    | Annotated[DefaultExpr, Tag("default")]
    | Annotated[FormatExpr, Tag("format")],
    Discriminator(
        _only_key,
        custom_error_type="invalid_expression",
        custom_error_message=(
            "a value must be a mapping with exactly one of: field, literal, lower, strip, "
            "default, format"
        ),
    ),
]


# ------------------------------------------------------------------------ conditions


def _same(left: Scalar, right: Scalar) -> bool:
    """Equality without Python's ``True == 1``: a checkbox is not the number one."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


class EqualsArgs(_Node):
    field: FieldPath
    value: str | bool | int | float | None


class EqualsCond(_Node):
    equals: EqualsArgs

    def holds(self, record: dict[str, Any]) -> bool:
        return _same(_read(self.equals.field, record), self.equals.value)

    def paths(self) -> Iterator[str]:
        yield self.equals.field


class InArgs(_Node):
    field: FieldPath
    values: list[str | bool | int | float | None] = Field(min_length=1)


class InCond(_Node):
    in_: InArgs = Field(alias="in")

    def holds(self, record: dict[str, Any]) -> bool:
        actual = _read(self.in_.field, record)
        return any(_same(actual, candidate) for candidate in self.in_.values)

    def paths(self) -> Iterator[str]:
        yield self.in_.field


class PresentCond(_Node):
    present: FieldPath

    def holds(self, record: dict[str, Any]) -> bool:
        text = to_text(_read(self.present, record))
        return text is not None and text.strip() != ""

    def paths(self) -> Iterator[str]:
        yield self.present


class AllCond(_Node):
    all: list[Cond] = Field(min_length=1)

    def holds(self, record: dict[str, Any]) -> bool:
        # Evaluate every branch (no short-circuit) so a malformed field is always reported.
        results = [condition.holds(record) for condition in self.all]
        return all(results)

    def paths(self) -> Iterator[str]:
        for condition in self.all:
            yield from condition.paths()


class AnyCond(_Node):
    any: list[Cond] = Field(min_length=1)

    def holds(self, record: dict[str, Any]) -> bool:
        results = [condition.holds(record) for condition in self.any]
        return any(results)

    def paths(self) -> Iterator[str]:
        for condition in self.any:
            yield from condition.paths()


Cond = Annotated[
    Annotated[EqualsCond, Tag("equals")]
    | Annotated[InCond, Tag("in")]
    | Annotated[PresentCond, Tag("present")]
    | Annotated[AllCond, Tag("all")]
    | Annotated[AnyCond, Tag("any")],
    Discriminator(
        _only_key,
        custom_error_type="invalid_condition",
        custom_error_message=(
            "a condition must be a mapping with exactly one of: equals, in, present, all, any"
        ),
    ),
]

for _model in (LowerExpr, StripExpr, DefaultExpr, AllCond, AnyCond):
    _model.model_rebuild()
