"""Applying a mapping to one record: pure, total, and all-or-nothing.

Every problem with a record is collected before anything is returned, so the caller gets either
a complete, API-valid :class:`DesiredCustomer` or one :class:`MappingError` naming each problem
with its path and the record id. Whatever the record holds (missing keys, nulls, wrong types,
nested junk), nothing else is raised: a malformed row from Salesforce must dead-letter one
account, not crash the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from mappings.constraints import (
    alias_problems,
    clean_name,
    configuration_problems,
    custom_field_problems,
    truncate_name,
)
from mappings.desired import BillingProviderConfiguration, ConfigurationValue, DesiredCustomer
from mappings.errors import MappingError
from mappings.expressions import Expr
from mappings.hierarchy import find_top_account
from mappings.ids import render_id_alias, to_18
from mappings.records import NotAScalarError, Scalar, get_key, to_text
from mappings.rules import BillingProviderRule, HierarchyRollup, IdentityAlias, Provider

T = TypeVar("T")
Problems = list[tuple[str, str]]


class CustomerRules(Protocol):
    """What the engine reads of a mapping (:class:`mappings.model.Mapping` is one): named here
    so the engine does not import the model, which calls it."""

    @property
    def name(self) -> Expr: ...
    @property
    def ingest_aliases(self) -> Sequence[Expr]: ...
    @property
    def identity_alias(self) -> IdentityAlias: ...
    @property
    def custom_fields(self) -> Mapping[str, Expr]: ...
    @property
    def billing_provider_configurations(self) -> Sequence[BillingProviderRule]: ...
    @property
    def archive_billing_providers(self) -> Sequence[Provider]: ...
    @property
    def hierarchy_rollup(self) -> HierarchyRollup: ...


class _Evaluator:
    """Runs expressions, turning a field that holds an object into a problem, not a crash."""

    def __init__(self) -> None:
        self.problems: Problems = []

    def run(self, where: str, fallback: T, step: Callable[[dict[str, Any]], T], record: Any) -> T:
        try:
            return step(record)
        except NotAScalarError as exc:
            self.problems.append((where, str(exc)))
            return fallback


def _record_id(record: object) -> str:
    if isinstance(record, dict):
        for key in ("Id", "AccountId"):
            value = get_key(record, key)
            if isinstance(value, str) and value:
                return value[:40]
    return "<unknown>"


def _account_id(where: str, account: dict[str, Any] | None, fallback: Any) -> str | Problems:
    raw = get_key(account, "Id") if account is not None else None
    if raw is None:
        raw = fallback
    if raw is None:
        return [(where, "account id is missing")]
    try:
        return to_18(raw)
    except ValueError as exc:
        return [(where, str(exc))]


def map_record(mapping: CustomerRules, record: dict[str, Any]) -> DesiredCustomer:
    record_id = _record_id(record)
    if not isinstance(record, dict):
        raise MappingError(record_id, [("<record>", "record is not an object")])
    account = get_key(record, "Account")
    if account is not None and not isinstance(account, dict):
        raise MappingError(record_id, [("Account", "is not an object")])

    child_id = _account_id("Account.Id", account, get_key(record, "AccountId"))
    if isinstance(child_id, list):
        raise MappingError(record_id, child_id)
    problems: Problems = []
    owner_record, owner_id = record, child_id
    rolled_up = False
    if mapping.hierarchy_rollup.enabled and account is not None:
        found = find_top_account(account, child_id, mapping.hierarchy_rollup.max_depth)
        if isinstance(found, list):
            raise MappingError(record_id, found)
        top, top_id, depth = found
        if depth > 0:
            rolled_up = True
            owner_record = {key: value for key, value in record.items() if key != "Account"}
            owner_record["Account"] = top
            owner_id = top_id

    evaluator = _Evaluator()
    name = _name(mapping, owner_record, evaluator)

    # (where it came from, alias): the mapping's aliases first, as in the product docs' payload.
    aliases = _aliases(mapping, owner_record, evaluator, "ingest_aliases")
    identity = None
    if mapping.identity_alias.enabled:
        identity = render_id_alias(mapping.identity_alias.format, owner_id)
        aliases.append(("identity_alias", identity))
    if rolled_up:
        aliases.extend(
            _aliases(mapping, record, evaluator, "hierarchy_rollup.child.ingest_aliases")
        )
        child_alias = render_id_alias(mapping.hierarchy_rollup.child_alias_format, child_id)
        aliases.append(("hierarchy_rollup.child_alias_format", child_alias))
    folded = _fold(aliases)
    problems.extend(alias_problems_with_origin(folded))

    custom_fields = _custom_fields(mapping, owner_record, evaluator)
    custom_fields["sfdc_account_id"] = owner_id
    problems.extend(custom_field_problems(custom_fields))

    configurations = _configurations(mapping, owner_record, evaluator, problems)

    problems = evaluator.problems + problems
    if name is None:
        problems.insert(0, ("name", "no name: the mapped value is missing or blank"))
    if problems or name is None:
        raise MappingError(record_id, problems)
    return DesiredCustomer(
        salesforce_account_id=owner_id,
        name=name,
        ingest_aliases=tuple(alias for _, alias in folded),
        identity_alias=identity,
        custom_fields=dict(sorted(custom_fields.items())),
        billing_provider_configurations=tuple(configurations),
        archive_billing_providers=tuple(sorted(set(mapping.archive_billing_providers))),
        source_account_ids=(owner_id, child_id) if rolled_up else (owner_id,),
    )


def _name(mapping: CustomerRules, record: dict[str, Any], evaluator: _Evaluator) -> str | None:
    value: Scalar = evaluator.run("name", None, mapping.name.evaluate, record)
    text = to_text(value)
    if text is None:
        return None
    text = clean_name(text)
    if not text.strip():
        return None
    return truncate_name(text)


def _aliases(
    mapping: CustomerRules, record: dict[str, Any], evaluator: _Evaluator, where: str
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for index, expression in enumerate(mapping.ingest_aliases):
        label = f"{where}[{index}]"
        text = to_text(evaluator.run(label, None, expression.evaluate, record))
        # Whitespace-only aliases are dropped like empty ones: no usage event is keyed on " ".
        if text is not None and text.strip():
            out.append((label, text))
    return out


def _fold(aliases: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop repeats, keeping the first occurrence, so the order stays stable."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for origin, alias in aliases:
        if alias not in seen:
            seen.add(alias)
            out.append((origin, alias))
    return out


def alias_problems_with_origin(aliases: list[tuple[str, str]]) -> Problems:
    """Alias limits, reported at the mapping entry that produced the offending alias."""
    problems = alias_problems([alias for _, alias in aliases])
    origins = {f"ingest_aliases[{index}]": origin for index, (origin, _) in enumerate(aliases)}
    return [(origins.get(path, path), message) for path, message in problems]


def _custom_fields(
    mapping: CustomerRules, record: dict[str, Any], evaluator: _Evaluator
) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, expression in mapping.custom_fields.items():
        if key == "sfdc_account_id":
            continue
        value = evaluator.run(f"custom_fields.{key}", None, expression.evaluate, record)
        text = to_text(value)
        if text is not None:
            out[key] = text
    return out


def _config_value(value: Scalar) -> ConfigurationValue | None:
    """Booleans stay booleans (``aws_is_subscription_product``); everything else is text,
    because provider ids are strings even when Salesforce stores them in number fields."""
    if isinstance(value, bool):
        return value
    return to_text(value)


def _configurations(
    mapping: CustomerRules, record: dict[str, Any], evaluator: _Evaluator, problems: Problems
) -> list[BillingProviderConfiguration]:
    out: list[BillingProviderConfiguration] = []
    seen: set[tuple[str, str]] = set()
    for index, rule in enumerate(mapping.billing_provider_configurations):
        where = f"billing_provider_configurations[{index}]"
        if rule.when is not None:
            condition = rule.when
            if not evaluator.run(f"{where}.when", False, condition.holds, record):
                continue
        configuration: dict[str, ConfigurationValue] = {}
        for key, expression in rule.configuration.items():
            value = evaluator.run(f"{where}.configuration.{key}", None, expression.evaluate, record)
            converted = _config_value(value)
            if converted is not None:
                configuration[key] = converted
        found = configuration_problems(where, rule.billing_provider, configuration)
        if found:
            problems.extend(_with_sources(found, rule.configuration))
            continue
        built = BillingProviderConfiguration(
            billing_provider=rule.billing_provider,
            delivery_method=rule.delivery_method,
            configuration=dict(sorted(configuration.items())),
        )
        if built.identity() not in seen:
            seen.add(built.identity())
            out.append(built)
    return out


def _with_sources(found: Problems, configuration: Mapping[str, Expr]) -> Problems:
    """Name the Salesforce fields behind a configuration key, so the fix is obvious."""
    out: Problems = []
    for path, message in found:
        key = path.rsplit(".", 1)[-1]
        expression = configuration.get(key)
        fields = sorted(set(expression.paths())) if expression is not None else []
        out.append((path, f"{message} (from {', '.join(fields)})" if fields else message))
    return out
