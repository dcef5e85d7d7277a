"""Applying the line-item rules to one deal: pure, total, every problem collected.

The deal's row carries its line items as Salesforce nests a parent-to-child subquery:
``OpportunityLineItems: {totalSize, done, records[]}``, or ``null`` when it has none. Each
line item is decided by the first rule whose condition holds; its product comes from the
mapping's ``product_codes`` table (by ``Product2.ProductCode``) or its ``product_id`` field.
A problem names the line item (its position and 18-character id) and the field it came from,
so the dead letter says exactly which line of which deal to fix.

Money: Salesforce currency fields are dollars (or the deal's currency's main unit); Metronome
amounts are integer cents of the contract's credit type. A fraction of a cent is refused,
never rounded.
"""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from mappings.contracts.line_items_model import (
    CommitTerm,
    LineItemRule,
    LineItemsRule,
    OverrideTerm,
    RecurringCommitTerm,
    ScheduledChargeTerm,
    SubscriptionTerm,
)
from mappings.contracts.terms import (
    DesiredCharge,
    DesiredLineCommit,
    DesiredOverride,
    DesiredRecurringCommit,
    DesiredSubscription,
    LineTerms,
)
from mappings.expressions import Expr
from mappings.records import NotAScalarError, Scalar, get_key, to_text

#: The child relationship the line items are read through (one subquery per deal query).
LINE_ITEMS_KEY = "OpportunityLineItems"
#: A commit or charge on an evergreen contract still needs an end: one year.
EVERGREEN_MONTHS = 12
_PERIOD_MONTHS = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}
_FREQUENCIES = ("MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY")

Problems = list[tuple[str, str]]


def line_item_rows(record: dict[str, Any], problems: Problems) -> list[dict[str, Any]]:
    """The deal's line items in the order Salesforce sent them (the subquery's ORDER BY)."""
    nested = get_key(record, LINE_ITEMS_KEY)
    if nested is None:
        return []
    rows = nested.get("records") if isinstance(nested, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        problems.append((LINE_ITEMS_KEY, "is not a subquery result ({totalSize, done, records})"))
        return []
    if nested.get("done") is False:
        problems.append((LINE_ITEMS_KEY, "was not read to the end (nextRecordsUrl not followed)"))
    return rows


class _Line:
    """One line item being mapped: evaluates expressions on it and records its problems."""

    def __init__(self, index: int, row: dict[str, Any], problems: Problems) -> None:
        self.row = row
        identity = to_text(_scalar(get_key(row, "Id")))
        self.id = identity or f"#{index + 1}"
        self.where = f"line_items[{index}] {self.id}"
        self.problems = problems

    def value(self, expression: Expr) -> Scalar:
        try:
            return expression.evaluate(self.row)
        except NotAScalarError as exc:
            self.problems.append((self.where, str(exc)))
            return None

    def fail(self, message: str, expression: Expr | None = None) -> None:
        fields = sorted(set(expression.paths())) if expression is not None else []
        suffix = f" (from {', '.join(fields)})" if fields else ""
        self.problems.append((self.where, message + suffix))

    def decimal(self, expression: Expr, what: str) -> Decimal | None:
        raw = self.value(expression)
        if raw is None or raw == "":
            self.fail(f"no {what}: the field is empty", expression)
            return None
        try:
            number = Decimal(str(raw).strip()) if not isinstance(raw, bool) else None
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            self.fail(f"{raw!r} is not a number ({what})", expression)
            return None
        if number < 0:
            self.fail(f"{raw!r} is negative ({what})", expression)
            return None
        return number

    def cents(self, expression: Expr, what: str) -> int | None:
        dollars = self.decimal(expression, what)
        if dollars is None:
            return None
        cents = dollars * 100
        if cents != cents.to_integral_value():
            self.fail(f"{dollars} has fractions of a cent ({what})", expression)
            return None
        return int(cents)


def _scalar(value: Any) -> Scalar:
    return value if isinstance(value, str | int | float | bool) or value is None else None


class TermWindow:
    """When the terms apply: from ``start`` to the contract's (exclusive) ``end``, if any."""

    def __init__(self, start: date, end: date | None, credit_type_id: str | None) -> None:
        self.start = start
        self.end = end
        self.credit_type_id = credit_type_id

    @property
    def finite_end(self) -> date:
        return self.end if self.end is not None else add_months(self.start, EVERGREEN_MONTHS)

    def months(self) -> int:
        end = self.finite_end
        return max(1, (end.year - self.start.year) * 12 + end.month - self.start.month)


def map_line_items(
    rule: LineItemsRule, record: dict[str, Any], window: TermWindow, problems: Problems
) -> LineTerms:
    """Every term the deal's line items make; problems are appended, never raised."""
    out: dict[str, list[Any]] = {
        "subscriptions": [], "commits": [], "recurring_commits": [], "overrides": [],
        "scheduled_charges": [],
    }  # fmt: skip
    for index, row in enumerate(line_item_rows(record, problems)):
        line = _Line(index, row, problems)
        chosen = _rule_for(rule, line)
        if chosen is None:
            if rule.unmatched == "fail":
                line.fail("no line item rule matches it")
            continue
        if chosen.ignore:
            continue
        product = _product(rule, line)
        if product is None:
            continue
        term = _term(chosen, line, product, window)
        if term is not None:
            out[_PLURAL[chosen.kind()]].append(term)
    return LineTerms(**{name: tuple(terms) for name, terms in out.items()})


_PLURAL = {
    "subscription": "subscriptions",
    "commit": "commits",
    "recurring_commit": "recurring_commits",
    "override": "overrides",
    "scheduled_charge": "scheduled_charges",
}


def _rule_for(rule: LineItemsRule, line: _Line) -> LineItemRule | None:
    for candidate in rule.rules:
        if candidate.when is None:
            return candidate
        try:
            if candidate.when.holds(line.row):
                return candidate
        except NotAScalarError as exc:
            line.problems.append((line.where, str(exc)))
            return None
    return None


def _product(rule: LineItemsRule, line: _Line) -> str | None:
    if rule.product_codes:
        code = to_text(_scalar(_nested(line.row, "Product2", "ProductCode")))
        if code is not None and code.strip() in rule.product_codes:
            return rule.product_codes[code.strip()]
    if rule.product_id is not None:
        text = to_text(line.value(rule.product_id))
        if text is not None and text.strip():
            return text.strip()
    line.fail(
        "names no Metronome product",
        rule.product_id if rule.product_id is not None else None,
    )
    return None


def _nested(row: dict[str, Any], *keys: str) -> Any:
    node: Any = row
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = get_key(node, key)
    return node


def _term(rule: LineItemRule, line: _Line, product: str, window: TermWindow) -> Any:
    if rule.subscription is not None:
        return _subscription(rule.subscription, line, product)
    if rule.commit is not None:
        return _commit(rule.commit, line, product, window)
    if rule.recurring_commit is not None:
        return _recurring(rule.recurring_commit, line, product, window)
    if rule.override is not None:
        return _override(rule.override, line, product, window)
    assert rule.scheduled_charge is not None  # noqa: S101 - LineItemRule holds exactly one
    return _charge(rule.scheduled_charge, line, product, window)


def _subscription(term: SubscriptionTerm, line: _Line, product: str) -> Any:
    frequency = to_text(line.value(term.billing_frequency))
    quantity = line.decimal(term.quantity, "quantity")
    if frequency is None or frequency.strip().upper() not in _FREQUENCIES:
        line.fail(
            f"{frequency!r} is not a billing frequency ({', '.join(_FREQUENCIES)})",
            term.billing_frequency,
        )
        return None
    if quantity is None:
        return None
    return DesiredSubscription(
        line_item_id=line.id,
        product_id=product,
        billing_frequency=frequency.strip().upper(),  # type: ignore[arg-type]
        quantity=float(quantity),
        collection_schedule=term.collection_schedule,
        prorated=term.prorated,
    )


def _commit(term: CommitTerm, line: _Line, product: str, window: TermWindow) -> Any:
    cents = line.cents(term.amount, "commit amount")
    if not cents:
        if cents == 0:
            line.fail("a commit of 0 grants nothing", term.amount)
        return None
    start = midnight(window.start)
    if term.invoicing == "complimentary":
        invoices: tuple[tuple[str, int], ...] = ()
    elif term.invoicing == "up_front":
        invoices = ((start, cents),)
    else:
        invoices = _instalments(cents, term.instalments, window)
    return DesiredLineCommit(
        line_item_id=line.id,
        product_id=product,
        type=term.type,
        amount_cents=cents,
        access_starting_at=start,
        access_ending_before=midnight(window.finite_end),
        invoices=invoices,
        credit_type_id=window.credit_type_id,
    )


def _instalments(cents: int, count: int, window: TermWindow) -> tuple[tuple[str, int], ...]:
    """``count`` invoices spread evenly over the term; the first carries the remainder."""
    step = max(1, window.months() // count)
    share, remainder = divmod(cents, count)
    return tuple(
        (midnight(add_months(window.start, n * step)), share + (remainder if n == 0 else 0))
        for n in range(count)
    )


def _recurring(term: RecurringCommitTerm, line: _Line, product: str, window: TermWindow) -> Any:
    cents = line.cents(term.amount, "recurring commit amount")
    if not cents:
        return None
    return DesiredRecurringCommit(
        line_item_id=line.id,
        product_id=product,
        amount_cents=cents,
        frequency=term.frequency,
        starting_at=midnight(window.start),
        ending_before=midnight(window.end) if window.end is not None else None,
        invoiced=term.invoiced,
        credit_type_id=window.credit_type_id,
    )


def _override(term: OverrideTerm, line: _Line, product: str, window: TermWindow) -> Any:
    base: dict[str, Any] = {
        "line_item_id": line.id,
        "product_id": product,
        "starting_at": midnight(window.start),
        "ending_before": midnight(window.end) if window.end is not None else None,
    }
    if term.discount is not None:
        percent = line.decimal(term.discount, "discount %")
        if percent is None:
            return None
        if percent > 100:
            line.fail(f"{percent} % is more than 100 %", term.discount)
            return None
        return DesiredOverride(**base, multiplier=float((100 - percent) / 100))
    assert term.unit_price is not None  # noqa: S101 - OverrideTerm holds exactly one
    price = line.decimal(term.unit_price, "unit price")
    if price is None:
        return None
    return DesiredOverride(
        **base, price_cents=float(price * 100), credit_type_id=window.credit_type_id
    )


def _charge(term: ScheduledChargeTerm, line: _Line, product: str, window: TermWindow) -> Any:
    cents = line.cents(term.amount, "charge amount")
    if not cents:
        return None
    if term.recurrence == "ONCE":
        items: tuple[tuple[str, int], ...] = ((midnight(window.start), cents),)
    else:
        step = _PERIOD_MONTHS[term.recurrence]
        count = max(1, window.months() // step)
        items = tuple((midnight(add_months(window.start, n * step)), cents) for n in range(count))
    name = to_text(line.value(term.name)) if term.name is not None else None
    return DesiredCharge(
        line_item_id=line.id,
        product_id=product,
        name=name.strip() if name and name.strip() else None,
        items=items,
        credit_type_id=window.credit_type_id,
    )


def midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
