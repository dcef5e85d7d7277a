"""Applying the ``contract`` block to one won opportunity: pure, total, all-or-nothing.

As with customers, every problem is collected before anything is returned: the caller gets a
complete :class:`DesiredContract`, ``None`` (the block's ``when`` does not hold: this deal gets
no contract), or one :class:`MappingError` naming each problem with the Salesforce field it
came from. A bad deal dead-letters alone; its account's customer still syncs.

Dates: Salesforce sends ``date`` fields as ``YYYY-MM-DD`` and ``datetime`` fields as
``YYYY-MM-DDTHH:MM:SS.sss+0000``; either becomes midnight UTC of that (UTC) day, the alignment
Metronome expects for ``starting_at``. The end is the start plus the term in whole months,
clamped to the month's last day (Jan 31 + 1 month = Feb 28/29).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from mappings.constraints import CUSTOM_FIELD_VALUE_MAX_CHARS, clean_name, truncate_name
from mappings.contracts.desired import (
    OPPORTUNITY_FIELD,
    DesiredCommit,
    DesiredContract,
    uniqueness_key,
)
from mappings.contracts.lifecycle import credit_type, deal_kind
from mappings.contracts.line_items import TermWindow, map_line_items
from mappings.contracts.terms import LineTerms
from mappings.errors import MappingError
from mappings.ids import to_18
from mappings.records import NotAScalarError, Scalar, get_key, to_text

if TYPE_CHECKING:
    from mappings.contracts.model import CommitRule, ContractRule
    from mappings.expressions import Expr

Problems = list[tuple[str, str]]
#: A contract term longer than this is almost surely a data-entry slip (1200 for 12).
MAX_TERM_MONTHS = 240
#: Metronome accepts any number; more than a year of payment terms is a data error.
MAX_NET_PAYMENT_TERMS_DAYS = 365
#: The record key under which the poll carries the account's *other* won opportunities
#: (rows without their Account): two deals won on one account in one poll interval must
#: both get a contract, while the customer is still built from one record.
WON_OPPORTUNITIES_KEY = "crmsync_won_opportunities"
#: A commit on an evergreen contract still needs an access end: one year, the usual term.
EVERGREEN_COMMIT_MONTHS = 12
#: Currencies a commit amount may be in: the API's default credit type is USD cents.
USD = "USD"
_PROVIDERS = frozenset(
    {"aws_marketplace", "azure_marketplace", "gcp_marketplace", "stripe", "netsuite"}
)


class _Values:
    """Evaluates expressions; a field holding an object becomes a problem, not a crash."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.problems: Problems = []

    def value(self, where: str, expression: Expr) -> Scalar:
        try:
            return expression.evaluate(self.record)
        except NotAScalarError as exc:
            self.problems.append((where, str(exc)))
            return None

    def holds(self, where: str, rule: Any) -> bool:
        try:
            return bool(rule.holds(self.record))
        except NotAScalarError as exc:
            self.problems.append((where, str(exc)))
            return False

    def fail(self, where: str, message: str, expression: Expr | None = None) -> None:
        fields = sorted(set(expression.paths())) if expression is not None else []
        self.problems.append(
            (where, f"{message} (from {', '.join(fields)})" if fields else message)
        )


def won_opportunity_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's own opportunity and every other won one carried with it, each with the
    record's ``Account`` attached; rows that are not Opportunities are left out."""
    account = get_key(record, "Account")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    extra = record.get(WON_OPPORTUNITIES_KEY)
    for row in [record, *(extra if isinstance(extra, list) else [])]:
        identity = opportunity_id(row)
        if identity is None or identity in seen:
            continue
        seen.add(identity)
        rows.append(
            {**{k: v for k, v in row.items() if k != WON_OPPORTUNITIES_KEY}, "Account": account}
        )
    return rows


def opportunity_id(record: Any) -> str | None:
    """The 18-character id of an Opportunity row; None when the row is not one (an Account
    row wrapped as a record has no Opportunity id: it gets no contract)."""
    if not isinstance(record, dict):
        return None
    raw = get_key(record, "Id")
    if not isinstance(raw, str) or not raw.startswith("006"):
        return None
    try:
        return to_18(raw)
    except ValueError:
        return None


def map_contract(
    rule: ContractRule,
    record: dict[str, Any],
    owner_account_id: str,
    starting_at_override: date | None = None,
) -> DesiredContract | None:
    """The contract for one won opportunity row (with its ``Account``), or None.

    ``owner_account_id`` is the account whose customer gets the contract (the top-most parent
    under roll-up, as for the customer).
    """
    opportunity = opportunity_id(record)
    if opportunity is None:
        raise MappingError("<unknown>", [("Id", "not an Opportunity id")])
    values = _Values(record)
    if rule.when is not None and not values.holds("contract.when", rule.when):
        if values.problems:
            raise MappingError(opportunity, values.problems)
        return None
    kind, parent = deal_kind(rule.deal_kind, record, values.problems)
    if kind == "expansion" and not values.problems:
        return None

    name = _name(rule, values)
    pricing, pricing_expression = rule.pricing.chosen()[0]
    pricing_value = to_text(values.value(f"contract.pricing.{pricing}", pricing_expression))
    if pricing_value is None or not pricing_value.strip():
        values.fail(f"contract.pricing.{pricing}", "is empty", pricing_expression)
    start = starting_at_override or _date(values, "contract.starting_at", rule.starting_at)
    follows = kind == "renewal" and starting_at_override is None and not _names_start(rule, record)
    months = _term_months(values, rule)
    end = _add_months(start, months) if start is not None and months is not None else None
    terms = _whole_number(
        values,
        "contract.net_payment_terms_days",
        rule.net_payment_terms_days,
        0,
        MAX_NET_PAYMENT_TERMS_DAYS,
    )
    provider = _billing_provider(values, rule)
    commits = _commits(values, rule, start, end)
    custom_fields = _custom_fields(values, rule, opportunity)
    credit = credit_type(rule.currency, record, values.problems)
    line_terms = LineTerms()
    if rule.line_items is not None and start is not None:
        window = TermWindow(start, end, credit)
        line_terms = map_line_items(rule.line_items, record, window, values.problems)

    if values.problems or start is None or pricing_value is None:
        raise MappingError(opportunity, values.problems or [("contract", "incomplete")])
    return DesiredContract(
        salesforce_opportunity_id=opportunity,
        salesforce_account_id=owner_account_id,
        uniqueness_key=uniqueness_key(opportunity),
        pricing=pricing,
        pricing_value=pricing_value.strip(),
        starting_at=_midnight(start),
        ending_before=_midnight(end) if end is not None else None,
        name=name,
        net_payment_terms_days=terms,
        usage_statement_schedule=rule.usage_statement_schedule,
        billing_provider=provider,
        delivery_method=(
            rule.billing_provider_configuration.delivery_method
            if provider is not None and rule.billing_provider_configuration is not None
            else None
        ),
        commits=tuple(commits),
        custom_fields=custom_fields,
        kind="renewal" if kind == "renewal" else "new",
        parent_opportunity_id=parent,
        credit_type_id=credit,
        line_terms=line_terms,
        follows_renewed=follows,
    )


def _names_start(rule: ContractRule, record: dict[str, Any]) -> bool:
    """Whether a renewal says where it starts (else it follows the renewed contract)."""
    expression = rule.deal_kind.renewal_starting_at if rule.deal_kind is not None else None
    if expression is None:
        return True
    try:
        text = to_text(expression.evaluate(record))
    except NotAScalarError:
        return True  # reported by the start date's own evaluation
    return text is not None and text.strip() != ""


def _name(rule: ContractRule, values: _Values) -> str | None:
    if rule.name is None:
        return None
    text = to_text(values.value("contract.name", rule.name))
    if text is None or not clean_name(text).strip():
        return None
    return truncate_name(clean_name(text))


def _date(values: _Values, where: str, expression: Expr) -> date | None:
    raw = values.value(where, expression)
    if raw is None:
        values.fail(where, "no date: the field is empty", expression)
        return None
    parsed = parse_salesforce_date(raw)
    if parsed is None:
        values.fail(where, f"{raw!r} is not a date (YYYY-MM-DD)", expression)
    return parsed


def parse_salesforce_date(raw: Scalar) -> date | None:
    """A Salesforce ``date`` or ``datetime`` value as a UTC calendar date; None if neither."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def _midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _term_months(values: _Values, rule: ContractRule) -> int | None:
    return _whole_number(values, "contract.term_months", rule.term_months, 1, MAX_TERM_MONTHS)


def _whole_number(
    values: _Values, where: str, expression: Expr | None, low: int, high: int
) -> int | None:
    if expression is None:
        return None
    raw = values.value(where, expression)
    if raw is None or raw == "":
        return None
    number: Decimal | None
    try:
        number = Decimal(str(raw).strip()) if not isinstance(raw, bool) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        values.fail(where, f"{raw!r} is not a whole number", expression)
        return None
    if not low <= number <= high:
        values.fail(where, f"{raw!r} is outside {low}..{high}", expression)
        return None
    return int(number)


def _billing_provider(values: _Values, rule: ContractRule) -> str | None:
    chosen = rule.billing_provider_configuration
    if chosen is None:
        return None
    where = "contract.billing_provider_configuration.billing_provider"
    text = to_text(values.value(where, chosen.billing_provider))
    if text is None or not text.strip():
        return None  # no provider on the account: a contract without one
    provider = text.strip()
    if provider not in _PROVIDERS:
        values.fail(
            where,
            f"{provider!r} is not a billing provider ({', '.join(sorted(_PROVIDERS))})",
            chosen.billing_provider,
        )
        return None
    return provider


def _commits(
    values: _Values, rule: ContractRule, start: date | None, end: date | None
) -> list[DesiredCommit]:
    out: list[DesiredCommit] = []
    for index, commit in enumerate(rule.commits):
        where = f"contract.commits[{index}]"
        if commit.when is not None and not values.holds(f"{where}.when", commit.when):
            continue
        cents = _amount_cents(values, f"{where}.amount", commit)
        if not _is_usd(values, f"{where}.currency", commit) or not cents or start is None:
            continue
        access_end = end if end is not None else _add_months(start, EVERGREEN_COMMIT_MONTHS)
        out.append(
            DesiredCommit(
                product_id=commit.product.id,
                product_name=commit.product.name,
                amount_cents=cents,
                invoiced=commit.invoiced,
                access_starting_at=_midnight(start),
                access_ending_before=_midnight(access_end),
            )
        )
    return out


def _amount_cents(values: _Values, where: str, commit: CommitRule) -> int | None:
    """Dollars (a Salesforce currency field, a JSON number) → integer cents, exactly."""
    raw = values.value(where, commit.amount)
    if raw is None or raw == "":
        return None
    try:
        dollars = Decimal(str(raw).strip()) if not isinstance(raw, bool) else None
    except InvalidOperation:
        dollars = None
    if dollars is None or not dollars.is_finite():
        values.fail(where, f"{raw!r} is not an amount", commit.amount)
        return None
    if dollars < 0:
        values.fail(where, f"{raw!r} is negative; a commit amount must be 0 or more", commit.amount)
        return None
    cents = dollars * 100
    if cents != cents.to_integral_value():
        values.fail(where, f"{raw!r} has fractions of a cent", commit.amount)
        return None
    return int(cents)


def _is_usd(values: _Values, where: str, commit: CommitRule) -> bool:
    if commit.currency is None:
        return True
    text = to_text(values.value(where, commit.currency))
    if text is None or text.strip().upper() == USD:
        return True
    values.fail(
        where,
        f"{text!r} is not USD: commit amounts are sent as USD cents",
        commit.currency,
    )
    return False


def _custom_fields(values: _Values, rule: ContractRule, opportunity: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, expression in rule.custom_fields.items():
        if key == OPPORTUNITY_FIELD:
            continue
        text = to_text(values.value(f"contract.custom_fields.{key}", expression))
        if text is None:
            continue
        if len(text) > CUSTOM_FIELD_VALUE_MAX_CHARS:
            values.fail(
                f"contract.custom_fields.{key}",
                f"is {len(text)} characters; Metronome allows {CUSTOM_FIELD_VALUE_MAX_CHARS}",
                expression,
            )
            continue
        out[key] = text
    out[OPPORTUNITY_FIELD] = opportunity
    return dict(sorted(out.items()))
