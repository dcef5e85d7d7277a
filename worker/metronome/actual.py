"""What Metronome actually holds (customers, contracts, the catalog), as the engines compare it.

Named "actual" as opposed to "desired" (mappings/desired.py): these are the values read back
from Metronome, not anything crmsync keeps in Redis.

Plain frozen values so the planner stays pure and tests can build them by hand. Fields hold
what the API *stores* (e.g. the name already truncated to 160), which is what a desired
state must be compared with, or an unchanged account looks changed on every poll.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BillingConfigurationState:
    """One row of POST /v1/getCustomerBillingProviderConfigurations."""

    id: str
    billing_provider: str
    delivery_method: str
    configuration: dict[str, Any] = field(default_factory=dict)
    archived: bool = False

    def identity(self) -> tuple[str, str, str]:
        """Same comparison as the desired side: provider, delivery method, configuration."""
        return (self.billing_provider, self.delivery_method, canonical_json(self.configuration))


@dataclass(frozen=True, slots=True)
class CustomerState:
    """A customer as GET /v1/customers{,/id} returns it (CustomerDetail).

    ``billing_configurations`` is None until fetched: the customer endpoints do not return
    them, and fetching costs a call that a sync without billing mappings should not make.
    """

    id: str
    name: str
    ingest_aliases: tuple[str, ...] = ()
    custom_fields: dict[str, str] = field(default_factory=dict)
    salesforce_account_id: str | None = None
    archived: bool = False
    billing_configurations: tuple[BillingConfigurationState, ...] | None = None

    def with_billing(self, configs: tuple[BillingConfigurationState, ...]) -> CustomerState:
        return CustomerState(
            id=self.id,
            name=self.name,
            ingest_aliases=self.ingest_aliases,
            custom_fields=self.custom_fields,
            salesforce_account_id=self.salesforce_account_id,
            archived=self.archived,
            billing_configurations=configs,
        )


#: A contract's subscriptions: (product id, billing frequency) -> the subscription's id, what
#: an expansion's seat line needs to update one (``update_subscriptions`` takes only the id).
SubscriptionIds = dict[tuple[str, str], str]


@dataclass(frozen=True, slots=True)
class ContractState:
    """A contract as POST /v2/contracts/list returns it (the fields the engine reads)."""

    id: str
    uniqueness_key: str | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)
    archived: bool = False
    starting_at: str = ""
    ending_before: str | None = None
    #: Its subscriptions' ids as the list shows them; None when they cannot be read.
    subscriptions: SubscriptionIds | None = None


@dataclass(frozen=True, slots=True)
class CreatedContract:
    """What POST /v1/contracts/create answers: the new contract's id and, when the answer
    carries the created contract (``data.contract``, optional in the spec), its subscriptions'
    ids -- None when it does not (they are then read when an expansion first needs them)."""

    id: str
    subscriptions: SubscriptionIds | None = None


@dataclass(frozen=True, slots=True)
class ProductState:
    """A catalog product (POST /v1/contract-pricing/products/list): commits need FIXED ones."""

    id: str
    name: str
    type: str
    archived: bool = False


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A rate card or a package: id, name and the aliases a contract may name it by."""

    id: str
    name: str
    aliases: tuple[str, ...] = ()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
