"""The mapping file's optional ``contract`` block: which won deals get a contract, and how.

A customer is billed only through a contract (Metronome's "Provision a customer" guide), so
this block is what makes a synced customer billable. It is checked as strictly as the rest of
the file, including the API's own exclusions: a package contract takes only a start date,
custom fields and the package, so naming a contract name, commits, a billing configuration or
terms beside a package is a load error with a line number, not a 400 on every deal.

Every value is an expression (see :mod:`mappings.expressions`); paths without ``Account.``
are Opportunity fields, and every path named here joins the poll's SOQL field list.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mappings.contracts.desired import OPPORTUNITY_FIELD, Pricing, UsageStatementSchedule
from mappings.contracts.line_items_model import CurrencyRule, DealKindRule, LineItemsRule
from mappings.desired import DeliveryMethod
from mappings.expressions import Cond, Expr, FieldExpr


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ProductRef(_Strict):
    """A FIXED product, by its name in the Metronome catalog or by id (exactly one)."""

    name: str | None = Field(default=None, min_length=1)
    id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> ProductRef:
        if (self.name is None) == (self.id is None):
            raise ValueError("name the product by exactly one of: name, id")
        return self


class CommitRule(_Strict):
    """A prepaid commit: ``amount`` (a currency field, in dollars) becomes integer cents.

    ``invoiced: true`` bills the whole amount on the contract's first day; ``false`` makes it
    complimentary (a PREPAID commit without an invoice schedule). A commit whose amount is
    absent or zero is left out; a negative amount or a currency other than USD fails the
    opportunity (it dead-letters; the customer sync goes on).
    """

    when: Cond | None = None
    product: ProductRef
    amount: Expr
    currency: Expr | None = None
    invoiced: bool = True

    def paths(self) -> Iterator[str]:
        if self.when is not None:
            yield from self.when.paths()
        yield from self.amount.paths()
        if self.currency is not None:
            yield from self.currency.paths()


class PricingRule(_Strict):
    """Exactly one of a rate card (alias or id) or a package (alias or id)."""

    rate_card_alias: Expr | None = None
    rate_card_id: Expr | None = None
    package_alias: Expr | None = None
    package_id: Expr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PricingRule:
        if len(self.chosen()) != 1:
            raise ValueError(
                "pricing needs exactly one of: rate_card_alias, rate_card_id, package_alias, "
                "package_id"
            )
        return self

    def chosen(self) -> list[tuple[Pricing, Expr]]:
        out: list[tuple[Pricing, Expr]] = []
        if self.rate_card_alias is not None:
            out.append(("rate_card_alias", self.rate_card_alias))
        if self.rate_card_id is not None:
            out.append(("rate_card_id", self.rate_card_id))
        if self.package_alias is not None:
            out.append(("package_alias", self.package_alias))
        if self.package_id is not None:
            out.append(("package_id", self.package_id))
        return out

    @property
    def is_package(self) -> bool:
        return self.package_alias is not None or self.package_id is not None


class BillingConfigurationRule(_Strict):
    """Which of the customer's billing provider configurations the contract bills through.

    ``billing_provider`` evaluates to a provider name (``aws_marketplace``, ``stripe``...);
    absent means a contract without one. The engine sends the matching configuration's *id*.
    """

    billing_provider: Expr
    delivery_method: DeliveryMethod = "direct_to_billing_provider"


class ContractRule(_Strict):
    """How a won Opportunity (with its Account) becomes a Metronome contract."""

    when: Cond | None = None
    name: Expr | None = None
    pricing: PricingRule
    #: A date (or date-time) field; the contract starts at midnight UTC of that day.
    starting_at: Expr = Field(default_factory=lambda: FieldExpr(field="CloseDate"))
    #: Months from the start to the (exclusive) end; absent or empty: evergreen.
    term_months: Expr | None = None
    net_payment_terms_days: Expr | None = None
    usage_statement_schedule: UsageStatementSchedule | None = None
    billing_provider_configuration: BillingConfigurationRule | None = None
    commits: list[CommitRule] = Field(default_factory=list)
    #: Contract custom fields (entity ``contract``); ``sfdc_opportunity_id`` is always the
    #: 18-character opportunity id.
    custom_fields: dict[str, Expr] = Field(default_factory=dict)
    #: The deal's line items -> subscriptions, commits, overrides, fees (line_items_model).
    line_items: LineItemsRule | None = None
    #: New, expansion or renewal, by the deal's Type; absent: every deal is new.
    deal_kind: DealKindRule | None = None
    #: The deal's currency -> a Metronome credit type; absent: USD cents.
    currency: CurrencyRule | None = None

    @model_validator(mode="after")
    def _package_takes_only_what_the_api_allows(self) -> ContractRule:
        if not self.pricing.is_package:
            return self
        named = [
            key
            for key, value in (
                ("name", self.name),
                ("term_months", self.term_months),
                ("net_payment_terms_days", self.net_payment_terms_days),
                ("usage_statement_schedule", self.usage_statement_schedule),
                ("billing_provider_configuration", self.billing_provider_configuration),
                ("commits", self.commits or None),
                ("line_items", self.line_items),
            )
            if value is not None
        ]
        if named:
            raise ValueError(
                "a package contract takes only starting_at and custom_fields besides the "
                f"package (POST /v1/contracts/create refuses the rest): remove {', '.join(named)}"
            )
        return self

    @model_validator(mode="after")
    def _custom_field_keys(self) -> ContractRule:
        for key in self.custom_fields:
            if not key.strip():
                raise ValueError("custom field keys may not be empty")
        return self

    @property
    def notes(self) -> list[str]:
        if OPPORTUNITY_FIELD in self.custom_fields:
            return [
                f"contract.custom_fields.{OPPORTUNITY_FIELD} is ignored: it is always the "
                "opportunity id"
            ]
        return []

    def custom_field_keys(self) -> list[str]:
        """Keys to register on entity ``contract`` (ours first)."""
        return [OPPORTUNITY_FIELD, *(k for k in self.custom_fields if k != OPPORTUNITY_FIELD)]

    def paths(self) -> Iterator[str]:
        """Every field the block reads (joins the poll's SOQL field list)."""
        if self.when is not None:
            yield from self.when.paths()
        if self.name is not None:
            yield from self.name.paths()
        for _, expression in self.pricing.chosen():
            yield from expression.paths()
        yield from self.starting_at.paths()
        for optional in (self.term_months, self.net_payment_terms_days):
            if optional is not None:
                yield from optional.paths()
        if self.billing_provider_configuration is not None:
            yield from self.billing_provider_configuration.billing_provider.paths()
        for commit in self.commits:
            yield from commit.paths()
        for key, expression in self.custom_fields.items():
            if key != OPPORTUNITY_FIELD:
                yield from expression.paths()
        for extra in (self.deal_kind, self.currency):
            if extra is not None:
                yield from extra.paths()

    def line_item_paths(self) -> list[str]:
        """The line-item fields the rules read: the subquery's field list (empty: none)."""
        if self.line_items is None:
            return []
        seen: dict[str, None] = {}
        for path in self.line_items.paths():
            seen.setdefault(path, None)
        return list(seen)
