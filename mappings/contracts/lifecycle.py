"""What kind of deal a won opportunity is, which earlier deal it changes, and which credit
type its amounts are in -- pure, from the contract block's ``deal_kind`` and ``currency``.

- **new**: a contract of its own;
- **expansion**: an edit of the live contract it expands (``v2/contracts/edit``);
- **renewal**: a new contract that transitions from the one it renews.

The kind comes from the deal's ``Type`` picklist through the mapping's lists (compared
case-insensitively, as picklist values are); a value in neither list is a new deal. The deal
it changes is named by a lookup field (an 18-character opportunity id) when the org keeps
one; without it the worker looks for the account's one live contract on the start date.
"""

from __future__ import annotations

from typing import Any, Literal

from mappings.contracts.line_items_model import CurrencyRule, DealKindRule
from mappings.contracts.terms import USD_CENTS_ID
from mappings.expressions import Expr
from mappings.ids import to_18
from mappings.records import NotAScalarError, to_text

DealKind = Literal["new", "expansion", "renewal"]
USD = "USD"
Problems = list[tuple[str, str]]


def _text(expression: Expr, record: dict[str, Any], where: str, problems: Problems) -> str | None:
    try:
        text = to_text(expression.evaluate(record))
    except NotAScalarError as exc:
        problems.append((where, str(exc)))
        return None
    return text.strip() if text is not None and text.strip() else None


def _fields(expression: Expr) -> str:
    return ", ".join(sorted(set(expression.paths())))


def deal_kind(
    rule: DealKindRule | None, record: dict[str, Any], problems: Problems
) -> tuple[DealKind, str | None]:
    """(kind, the 18-character id of the deal it expands or renews, if the deal names one)."""
    if rule is None:
        return "new", None
    value = _text(rule.type, record, "contract.deal_kind.type", problems)
    kind: DealKind = "new"
    if value is not None:
        folded = value.casefold()
        if folded in {v.casefold() for v in rule.expansion}:
            kind = "expansion"
        elif folded in {v.casefold() for v in rule.renewal}:
            kind = "renewal"
    if kind == "new" or rule.parent_opportunity is None:
        return kind, None
    where = "contract.deal_kind.parent_opportunity"
    parent = _text(rule.parent_opportunity, record, where, problems)
    if parent is None:
        return kind, None
    try:
        parent_id = to_18(parent)
    except ValueError:
        problems.append(
            (where, f"{parent!r} is not a Salesforce id (from {_fields(rule.parent_opportunity)})")
        )
        return kind, None
    if not parent_id.startswith("006"):
        problems.append(
            (where, f"{parent_id} is not an Opportunity (from {_fields(rule.parent_opportunity)})")
        )
        return kind, None
    return kind, parent_id


def credit_type(
    rule: CurrencyRule | None, record: dict[str, Any], problems: Problems
) -> str | None:
    """The credit type id the deal's amounts are in; None for USD cents (the API default).
    A currency the mapping's table lacks is a problem: the deal dead-letters."""
    if rule is None:
        return None
    code = _text(rule.code, record, "contract.currency.code", problems)
    if code is None:
        return None
    table = {k.strip().upper(): v for k, v in rule.credit_types.items()}
    found = table.get(code.upper())
    if found is None:
        if code.upper() == USD:
            return None
        problems.append(
            (
                "contract.currency.code",
                f"{code!r} has no Metronome credit type in contract.currency.credit_types "
                f"(from {_fields(rule.code)})",
            )
        )
        return None
    return None if found == USD_CENTS_ID else found
