"""The desired Metronome contract: what one won Opportunity *should* be in Metronome.

The seam between the pure contract mapping (which produces it) and the contract engine (which
creates it, once). Like :class:`~mappings.desired.DesiredCustomer` it is a frozen value with a
canonical JSON form: its hash is the opportunity's dedupe key (an opportunity whose contract
exists and whose hash is unchanged costs zero API calls), and a changed hash after the
contract exists is what "needs attention" reports, field by field.

Two things are left for the engine to resolve, because only Metronome knows them: the id of
the customer's billing provider configuration (``POST /v1/contracts/create`` references it
*by id*) and the ids of commit products named by name. :meth:`DesiredContract.request_body`
takes both and builds the exact ``POST /v1/contracts/create`` body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Uniqueness keys are account-wide in Metronome and never released (not even by archiving),
#: so ours are namespaced: nothing else in the account can collide with them.
UNIQUENESS_KEY_FORMAT = "crmsync:sfdc-opportunity:{opportunity_id}"
#: The contract custom field that names the opportunity (registered on entity ``contract``
#: with enforce_uniqueness): the second line of "exactly once" and what an operator searches.
OPPORTUNITY_FIELD = "sfdc_opportunity_id"

Pricing = Literal["rate_card_alias", "rate_card_id", "package_alias", "package_id"]
Frequency = Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY"]
StatementDay = Literal["FIRST_OF_MONTH", "CONTRACT_START", "CUSTOM_DATE"]


def uniqueness_key(opportunity_id: str) -> str:
    """The contract's ``uniqueness_key`` for an 18-character opportunity id (≤ 128 chars)."""
    return UNIQUENESS_KEY_FORMAT.format(opportunity_id=opportunity_id)


class DesiredCommit(BaseModel):
    """A prepaid commit on a FIXED product: ``amount_cents`` of access from the contract's
    start; invoiced once at the start (``invoiced``) or complimentary (no invoice schedule)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: str | None = None
    product_name: str | None = None
    amount_cents: int
    invoiced: bool
    access_starting_at: str
    access_ending_before: str

    def product_ref(self) -> str:
        """How the mapping named the product, for messages and the product lookup."""
        return self.product_id or self.product_name or "?"


class UsageStatementSchedule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    frequency: Frequency = "MONTHLY"
    day: StatementDay = "FIRST_OF_MONTH"
    billing_anchor_date: str | None = None


class DesiredContract(BaseModel):
    """The contract one won opportunity maps to.

    ``salesforce_account_id`` is the account whose customer gets the contract (the top-most
    parent under roll-up). ``billing_provider``/``delivery_method`` select one of that
    customer's billing provider configurations; None means a contract without one (invoices
    stay in Metronome).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    salesforce_opportunity_id: str
    salesforce_account_id: str
    uniqueness_key: str
    pricing: Pricing
    pricing_value: str
    starting_at: str
    ending_before: str | None = None
    name: str | None = None
    net_payment_terms_days: int | None = None
    usage_statement_schedule: UsageStatementSchedule | None = None
    billing_provider: str | None = None
    delivery_method: str | None = None
    commits: tuple[DesiredCommit, ...] = ()
    custom_fields: dict[str, str] = Field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.canonical_json())

    @property
    def is_package(self) -> bool:
        return self.pricing in ("package_alias", "package_id")

    def canonical(self) -> dict[str, Any]:
        """Everything that decides the contract, in a fixed order (the dedupe form)."""
        return json.loads(self.model_dump_json())  # type: ignore[no-any-return]

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    def state_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def differences(self, before: Mapping[str, Any]) -> list[str]:
        """Top-level fields whose value differs from ``before`` (an earlier canonical form):
        what "needs attention" says changed after the contract was made."""
        now = self.canonical()
        return sorted(key for key in now.keys() | before.keys() if now.get(key) != before.get(key))

    def request_body(
        self,
        customer_id: str,
        *,
        billing_configuration_id: str | None,
        product_ids: Mapping[str, str],
    ) -> dict[str, Any]:
        """The ``POST /v1/contracts/create`` body.

        ``product_ids`` maps each commit's :meth:`DesiredCommit.product_ref` to the product id.
        A package contract carries only what the API allows with a package (customer, start,
        package, uniqueness key, custom fields): anything else is a 400.
        """
        body: dict[str, Any] = {
            "customer_id": customer_id,
            "starting_at": self.starting_at,
            "uniqueness_key": self.uniqueness_key,
            self.pricing: self.pricing_value,
        }
        if self.custom_fields:
            body["custom_fields"] = dict(sorted(self.custom_fields.items()))
        if self.is_package:
            return body
        if self.name is not None:
            body["name"] = self.name
        if self.ending_before is not None:
            body["ending_before"] = self.ending_before
        if self.net_payment_terms_days is not None:
            body["net_payment_terms_days"] = self.net_payment_terms_days
        if self.usage_statement_schedule is not None:
            body["usage_statement_schedule"] = self.usage_statement_schedule.model_dump(
                exclude_none=True
            )
        if billing_configuration_id is not None:
            body["billing_provider_configuration"] = {
                "billing_provider_configuration_id": billing_configuration_id
            }
        if self.commits:
            body["commits"] = [_commit_body(c, product_ids[c.product_ref()]) for c in self.commits]
        return body


def _commit_body(commit: DesiredCommit, product_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "PREPAID",
        "product_id": product_id,
        "access_schedule": {
            "schedule_items": [
                {
                    "amount": commit.amount_cents,
                    "starting_at": commit.access_starting_at,
                    "ending_before": commit.access_ending_before,
                }
            ]
        },
    }
    if commit.invoiced:
        body["invoice_schedule"] = {
            "schedule_items": [
                {"timestamp": commit.access_starting_at, "amount": commit.amount_cents}
            ]
        }
    return body
