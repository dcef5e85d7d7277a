"""The contract block's deal-lifecycle rules: line items, the deal's kind, its currency.

A B2B deal is sold as line items (50 seats, a $120k commit, 20 % off compute, an onboarding
fee), so the terms of a contract come from its ``OpportunityLineItems``. Each rule here has a
condition on one line item and makes exactly one kind of Metronome term:

- ``subscription``: a SUBSCRIPTION product at a billing frequency (which must be a rate on
  the contract's rate card), ``Quantity`` seats, collected in advance or in arrears;
- ``commit``: PREPAID or POSTPAID, the amount in dollars from ``TotalPrice`` (or another
  field) as integer cents, invoiced up front, in instalments or complimentary (PREPAID only);
- ``recurring_commit``: the amount granted again every period;
- ``override``: the line's ``Discount`` % as a MULTIPLIER on the product (20 % off -> 0.8),
  or a negotiated unit price as an OVERWRITE (a FLAT price in cents);
- ``scheduled_charge``: a fee, once (on the start date) or every period of the term.

Every expression in a line-item rule is read on the *line item* (``Quantity``,
``Product2.ProductCode``...), so its paths join the line-item subquery, not the deal's fields.
Which Metronome product a line item means comes from ``product_codes`` (``ProductCode`` ->
product id) first, else ``product_id`` (a ``Product2`` field holding the id).

The rules refuse what the API would refuse, at load time: a POSTPAID commit needs an invoice
(it is never complimentary), instalments are a whole number from 2 to 12, an override is a
discount or a price, never both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mappings.expressions import Cond, Expr, FieldExpr, LiteralExpr

Frequency = Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY"]
Period = Literal["MONTHLY", "QUARTERLY", "ANNUAL"]
#: The Salesforce Type picklist's standard values an org uses for each kind of deal.
DEFAULT_EXPANSION_TYPES = ("Existing Customer - Upgrade", "Expansion")
DEFAULT_RENEWAL_TYPES = ("Renewal", "Existing Customer - Renewal")
MAX_INSTALMENTS = 12


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _field(path: str) -> Expr:
    return FieldExpr(field=path)


class SubscriptionTerm(_Strict):
    billing_frequency: Expr = Field(default_factory=lambda: LiteralExpr(literal="ANNUAL"))
    quantity: Expr = Field(default_factory=lambda: _field("Quantity"))
    collection_schedule: Literal["ADVANCE", "ARREARS"] = "ADVANCE"
    prorated: bool = True

    def paths(self) -> Iterator[str]:
        yield from self.billing_frequency.paths()
        yield from self.quantity.paths()


class CommitTerm(_Strict):
    type: Literal["PREPAID", "POSTPAID"] = "PREPAID"
    amount: Expr = Field(default_factory=lambda: _field("TotalPrice"))
    invoicing: Literal["up_front", "instalments", "complimentary"] = "up_front"
    instalments: int = Field(default=4, ge=2, le=MAX_INSTALMENTS)

    @model_validator(mode="after")
    def _postpaid_is_invoiced_once(self) -> CommitTerm:
        if self.type == "POSTPAID" and self.invoicing != "up_front":
            raise ValueError(
                "a POSTPAID commit is invoiced once, for its whole amount (the API refuses "
                "anything else): use invoicing: up_front"
            )
        return self

    def paths(self) -> Iterator[str]:
        yield from self.amount.paths()


class RecurringCommitTerm(_Strict):
    #: The amount granted (and invoiced, if ``invoiced``) every period, in dollars.
    amount: Expr = Field(default_factory=lambda: _field("UnitPrice"))
    frequency: Period = "MONTHLY"
    invoiced: bool = True

    def paths(self) -> Iterator[str]:
        yield from self.amount.paths()


class OverrideTerm(_Strict):
    """Exactly one of ``discount`` (a percent, -> MULTIPLIER) or ``unit_price`` (dollars
    per unit, -> OVERWRITE at a FLAT price in cents)."""

    discount: Expr | None = None
    unit_price: Expr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> OverrideTerm:
        if (self.discount is None) == (self.unit_price is None):
            raise ValueError("an override takes exactly one of: discount, unit_price")
        return self

    def paths(self) -> Iterator[str]:
        for expression in (self.discount, self.unit_price):
            if expression is not None:
                yield from expression.paths()


class ScheduledChargeTerm(_Strict):
    amount: Expr = Field(default_factory=lambda: _field("TotalPrice"))
    #: ``ONCE`` on the start date, or every period of the contract's term.
    recurrence: Literal["ONCE", "MONTHLY", "QUARTERLY", "ANNUAL"] = "ONCE"
    name: Expr | None = Field(default_factory=lambda: _field("Product2.Name"))

    def paths(self) -> Iterator[str]:
        yield from self.amount.paths()
        if self.name is not None:
            yield from self.name.paths()


class LineItemRule(_Strict):
    """A condition on a line item and the one term it makes (``ignore: true``: none, e.g.
    a usage product billed at its list price)."""

    when: Cond | None = None
    ignore: bool = False
    subscription: SubscriptionTerm | None = None
    commit: CommitTerm | None = None
    recurring_commit: RecurringCommitTerm | None = None
    override: OverrideTerm | None = None
    scheduled_charge: ScheduledChargeTerm | None = None

    @model_validator(mode="after")
    def _one_term(self) -> LineItemRule:
        if len(self.terms()) + self.ignore != 1:
            raise ValueError(
                "a line item rule makes exactly one of: subscription, commit, "
                "recurring_commit, override, scheduled_charge (or says ignore: true)"
            )
        return self

    def terms(self) -> list[BaseModel]:
        return [
            term
            for term in (
                self.subscription,
                self.commit,
                self.recurring_commit,
                self.override,
                self.scheduled_charge,
            )
            if term is not None
        ]

    def kind(self) -> str:
        for name in ("subscription", "commit", "recurring_commit", "override"):
            if getattr(self, name) is not None:
                return name
        return "scheduled_charge"

    def paths(self) -> Iterator[str]:
        if self.when is not None:
            yield from self.when.paths()
        for term in self.terms():
            yield from term.paths()  # type: ignore[attr-defined]


class LineItemsRule(_Strict):
    """How a deal's line items become terms. The first rule whose ``when`` holds decides a
    line item; ``unmatched: fail`` dead-letters a deal with a line item no rule takes."""

    product_id: Expr | None = Field(
        default_factory=lambda: _field("Product2.Metronome_Product_Id__c")
    )
    product_codes: dict[str, str] = Field(default_factory=dict)
    rules: list[LineItemRule] = Field(min_length=1)
    unmatched: Literal["fail", "ignore"] = "fail"

    @model_validator(mode="after")
    def _a_product_source(self) -> LineItemsRule:
        if self.product_id is None and not self.product_codes:
            raise ValueError("line items need product_id or product_codes to name a product")
        for code, product in self.product_codes.items():
            if not code.strip() or not product.strip():
                raise ValueError("product_codes maps a non-empty ProductCode to a product id")
        return self

    def paths(self) -> Iterator[str]:
        """Every line-item field the rules read (the subquery's field list)."""
        yield "Id"
        if self.product_codes:
            yield "Product2.ProductCode"
        if self.product_id is not None:
            yield from self.product_id.paths()
        for rule in self.rules:
            yield from rule.paths()


class DealKindRule(_Strict):
    """New, expansion or renewal, by the deal's ``Type`` (values configurable), and the
    earlier deal it changes (a lookup field on the deal)."""

    type: Expr = Field(default_factory=lambda: _field("Type"))
    expansion: list[str] = Field(default_factory=lambda: list(DEFAULT_EXPANSION_TYPES))
    renewal: list[str] = Field(default_factory=lambda: list(DEFAULT_RENEWAL_TYPES))
    parent_opportunity: Expr | None = Field(
        default_factory=lambda: _field("Metronome_Parent_Opportunity__c")
    )
    #: A renewal starts where the contract it renews ends, unless this field holds a date.
    renewal_starting_at: Expr | None = Field(
        default_factory=lambda: _field("Contract_Start_Date__c")
    )

    @model_validator(mode="after")
    def _disjoint(self) -> DealKindRule:
        both = {v.casefold() for v in self.expansion} & {v.casefold() for v in self.renewal}
        if both:
            raise ValueError(f"{sorted(both)} cannot mean both expansion and renewal")
        return self

    def paths(self) -> Iterator[str]:
        yield from self.type.paths()
        for optional in (self.parent_opportunity, self.renewal_starting_at):
            if optional is not None:
                yield from optional.paths()


class CurrencyRule(_Strict):
    """The deal's currency (``CurrencyIsoCode`` in multi-currency orgs) -> a Metronome
    credit type id. Absent: USD cents, the API's default. A currency the table lacks
    dead-letters the deal."""

    code: Expr = Field(default_factory=lambda: _field("CurrencyIsoCode"))
    credit_types: dict[str, str] = Field(default_factory=dict)

    def paths(self) -> Iterator[str]:
        yield from self.code.paths()
