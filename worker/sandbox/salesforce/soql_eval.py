"""Run a parsed SOQL query against the record store and render rows as the REST API does.

Type rules follow Salesforce where a wrong literal would otherwise silently match nothing:
a datetime field compared with a date or a quoted string, or a boolean with a string, is an
``INVALID_FIELD`` error; a malformed id literal is ``INVALID_QUERY_FILTER_OPERATOR``. String
comparisons and ``LIKE`` are case-insensitive, ids are compared in their 18-character form.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
from worker.sandbox.salesforce.schema import FieldType, SObjectType, sobject_type
from worker.sandbox.salesforce.soql_parser import (
    And,
    Comparison,
    Condition,
    FieldPath,
    InList,
    Like,
    Literal,
    Not,
    Or,
    Query,
    SoqlError,
)
from worker.sandbox.salesforce.store import Record, RecordStore

Getter = Callable[[Record], Any]
Predicate = Callable[[Record], bool]


@dataclass(frozen=True, slots=True)
class _Resolved:
    getter: Getter
    kind: FieldType
    canonical: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _RenderNode:
    """Fields of one object in SELECT order, plus nested relationship nodes."""

    sobject: SObjectType
    entries: tuple[tuple[str, _RenderNode | None, str | None], ...]  # (key, child, fk field)


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    sobject: SObjectType
    rows: list[Record]
    render_plan: _RenderNode


def execute(query: Query, store: RecordStore, *, include_deleted: bool) -> CompiledQuery:
    sobject = _sobject(query.sobject)
    plan = _render_plan(sobject, query.fields, store)
    predicate = _predicate(query.where, sobject, store, include_deleted)
    rows = [
        record
        for record in store.table(sobject).values()
        if (include_deleted or not record["IsDeleted"]) and predicate(record)
    ]
    for item in reversed(query.order_by):
        resolved = _resolve(sobject, item.field, store)
        rows.sort(
            key=_sort_key(resolved, item.descending, item.nulls_last), reverse=item.descending
        )
    if query.limit is not None:
        rows = rows[: query.limit]
    return CompiledQuery(sobject, rows, plan)


def render(record: Record, node: _RenderNode, store: RecordStore, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": {
            "type": node.sobject.name,
            "url": f"/services/data/v{version}/sobjects/{node.sobject.name}/{record['Id']}",
        }
    }
    for key, child, foreign_key in node.entries:
        if child is None:
            out[key] = _json_value(record[key])
            continue
        target_id = record[foreign_key] if foreign_key else None
        # stored references are already 18-character ids: a direct table lookup suffices
        target = store.tables[child.sobject.name].get(target_id) if target_id else None
        out[key] = None if target is None else render(target, child, store, version)
    return out


def full_record_plan(record: Record) -> _RenderNode:
    """Every field of the record's object (``GET /sobjects/{type}/{id}``)."""
    sobject = _target(record["attributes_type"])
    return _RenderNode(sobject, tuple((name, None, None) for name in sobject.fields))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _sobject(name: str) -> SObjectType:
    sobject = sobject_type(name)
    if sobject is None:
        raise SoqlError(
            f"sObject type '{name}' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name.",
            code="INVALID_TYPE",
        )
    return sobject


def _target(name: str) -> SObjectType:
    sobject = sobject_type(name)
    if sobject is None:  # a relationship in schema.py names an object it does not define
        raise SoqlError(f"sObject type '{name}' is not supported", code="INVALID_TYPE")
    return sobject


def _no_such_column(name: str, sobject: SObjectType) -> SoqlError:
    return SoqlError(
        f"No such column '{name}' on entity '{sobject.name}'. If you are attempting to use a "
        "custom field, be sure to append the '__c' after the custom field name. Please "
        "reference your WSDL or the describe call for the appropriate names.",
        code="INVALID_FIELD",
    )


def _resolve(sobject: SObjectType, path: FieldPath, store: RecordStore) -> _Resolved:
    current = sobject
    hops: list[tuple[str, str]] = []  # (foreign key field, target table)
    canonical: list[str] = []
    for part in path.parts[:-1]:
        relationship = current.relationship(part)
        if relationship is None:
            raise SoqlError(
                f"Didn't understand relationship '{part}' in field path. If you are attempting "
                "to use a custom relationship, be sure to append the '__r' after the custom "
                "relationship name.",
                code="INVALID_FIELD",
            )
        hops.append((relationship.foreign_key, relationship.target))
        canonical.append(relationship.name)
        current = _target(relationship.target)
    name = current.field_name(path.parts[-1])
    if name is None:
        raise _no_such_column(path.parts[-1], current)
    canonical.append(name)
    tables = store.tables

    def getter(record: Record) -> Any:
        node: Record = record
        for foreign_key, table in hops:
            target_id = node[foreign_key]
            found = tables[table].get(target_id) if target_id else None
            if found is None:
                return None
            node = found
        return node[name]

    if not hops:

        def getter(record: Record) -> Any:
            return record[name]

    return _Resolved(getter, current.fields[name], tuple(canonical))


def _render_plan(
    sobject: SObjectType, fields: Iterable[FieldPath], store: RecordStore
) -> _RenderNode:
    seen: set[tuple[str, ...]] = set()
    tree: dict[str, Any] = {}
    for path in fields:
        resolved = _resolve(sobject, path, store)
        key = tuple(part.lower() for part in resolved.canonical)
        if key in seen:
            raise SoqlError(f"duplicate field selected: {path}")
        seen.add(key)
        node = tree
        for part in resolved.canonical[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SoqlError(f"duplicate field selected: {path}")
        node[resolved.canonical[-1]] = None
    return _build_node(sobject, tree)


def _build_node(sobject: SObjectType, tree: dict[str, Any]) -> _RenderNode:
    entries: list[tuple[str, _RenderNode | None, str | None]] = []
    for key, sub in tree.items():
        if sub is None:
            entries.append((key, None, None))
            continue
        relationship = sobject.relationship(key)
        if relationship is None:  # the plan was built from resolved (canonical) names
            raise SoqlError(f"Didn't understand relationship '{key}'", code="INVALID_FIELD")
        target = _target(relationship.target)
        entries.append((key, _build_node(target, sub), relationship.foreign_key))
    return _RenderNode(sobject, tuple(entries))


def _coerce_literal(value: Literal, resolved: _Resolved) -> Any:
    """The literal as the stored type, or the SOQL error Salesforce gives for a mismatch."""
    if value is None:
        return None
    kind = resolved.kind
    label = ".".join(resolved.canonical)
    if kind in (FieldType.ID, FieldType.REFERENCE):
        if not isinstance(value, str):
            raise _type_error(label, "id")
        try:
            return normalize_salesforce_id(value)
        except InvalidSalesforceId:
            raise SoqlError(
                f"invalid ID field: {value}", code="INVALID_QUERY_FILTER_OPERATOR"
            ) from None
    if kind in (FieldType.STRING, FieldType.PICKLIST):
        if not isinstance(value, str):
            raise _type_error(label, "string")
        return value.casefold()
    if kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise _type_error(label, "boolean")
        return value
    if kind is FieldType.DATETIME:
        if not isinstance(value, datetime):
            raise _type_error(label, "dateTime")
        return value
    if kind is FieldType.DATE:
        if isinstance(value, datetime) or not isinstance(value, date):
            raise _type_error(label, "date")
        return value
    if isinstance(value, bool) or not isinstance(value, float):
        raise _type_error(label, "double")
    return value


def _type_error(label: str, expected: str) -> SoqlError:
    return SoqlError(
        f"value of filter criterion for field '{label}' must be of type {expected} and "
        "should not be enclosed in quotes",
        code="INVALID_FIELD",
    )


def _stored(resolved: _Resolved) -> Getter:
    """Getter returning the value in comparison form (case-folded strings)."""
    getter = resolved.getter
    if resolved.kind in (FieldType.STRING, FieldType.PICKLIST):

        def folded(record: Record) -> Any:
            value = getter(record)
            return value.casefold() if value is not None else None

        return folded
    return getter


_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _predicate(
    condition: Condition | None, sobject: SObjectType, store: RecordStore, include_deleted: bool
) -> Predicate:
    if condition is None:
        return lambda record: True
    if isinstance(condition, And):
        parts = [_predicate(t, sobject, store, include_deleted) for t in condition.terms]
        return lambda record: all(part(record) for part in parts)
    if isinstance(condition, Or):
        parts = [_predicate(t, sobject, store, include_deleted) for t in condition.terms]
        return lambda record: any(part(record) for part in parts)
    if isinstance(condition, Not):
        inner = _predicate(condition.term, sobject, store, include_deleted)
        return lambda record: not inner(record)
    resolved = _resolve(sobject, condition.field, store)
    get = _stored(resolved)
    if isinstance(condition, Comparison):
        return _comparison(condition, resolved, get)
    if isinstance(condition, Like):
        if resolved.kind not in (FieldType.STRING, FieldType.PICKLIST):
            raise SoqlError(
                f"invalid operator on field: LIKE on {condition.field}",
                code="INVALID_FIELD",
            )
        pattern = _like_regex(condition.pattern)
        return lambda record: (value := get(record)) is not None and bool(pattern.match(value))
    if isinstance(condition, InList):
        values = {_coerce_literal(v, resolved) for v in condition.values}
        if condition.negated:
            return lambda record: get(record) not in values
        return lambda record: get(record) in values
    if resolved.kind not in (FieldType.ID, FieldType.REFERENCE):
        raise SoqlError("a semi-join compares an id or reference field", code="MALFORMED_QUERY")
    subquery = execute(condition.subquery, store, include_deleted=include_deleted)
    inner_resolved = _resolve(subquery.sobject, condition.subquery.fields[0], store)
    if inner_resolved.kind not in (FieldType.ID, FieldType.REFERENCE):
        raise SoqlError("a semi-join subquery selects an id or reference field")
    ids = {inner_resolved.getter(row) for row in subquery.rows} - {None}
    if condition.negated:
        return lambda record: get(record) not in ids
    return lambda record: get(record) in ids


def _comparison(condition: Comparison, resolved: _Resolved, get: Getter) -> Predicate:
    value = _coerce_literal(condition.value, resolved)
    op = condition.op
    if op == "=":
        return lambda record: get(record) == value
    if op == "!=":
        return lambda record: get(record) != value
    if value is None:
        raise SoqlError(f"null can only be compared with = or !=, not {op}")
    if resolved.kind is FieldType.BOOLEAN:
        raise SoqlError(
            f"invalid operator on field '{condition.field}': {op}", code="INVALID_FIELD"
        )
    compare = _ORDERING[op]
    return lambda record: (stored := get(record)) is not None and compare(stored, value)


def _like_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def _sort_key(resolved: _Resolved, descending: bool, nulls_last: bool) -> Callable[[Record], Any]:
    get = _stored(resolved)
    # With reverse=True the rank order flips too, so pick the rank that lands nulls right.
    null_rank = 1 if nulls_last != descending else 0
    value_rank = 1 - null_rank

    def key(record: Record) -> tuple[Any, ...]:
        value = get(record)
        return (null_rank,) if value is None else (value_rank, value)

    return key
