"""The desired Metronome customer: what a Salesforce account *should* be in Metronome.

This is the seam between the pure mapping (which produces it) and the upsert engine (which
makes Metronome hold it). It is deliberately a plain value: frozen, hashable by content, with a
canonical JSON form so that two equal customers always give the same dedupe hash whatever order
their fields or aliases arrived in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Providers and the configuration keys Metronome requires for each
#: (POST /v1/setCustomerBillingProviderConfigurations refuses a configuration without them).
REQUIRED_CONFIGURATION_KEYS: dict[str, tuple[str, ...]] = {
    "aws_marketplace": ("aws_customer_id", "aws_product_code", "aws_region"),
    "azure_marketplace": ("azure_subscription_id",),
    "gcp_marketplace": ("gcp_entitlement_id", "gcp_service_name"),
    "stripe": ("stripe_customer_id", "stripe_collection_method"),
    "netsuite": ("netsuite_customer_id",),
}

DeliveryMethod = Literal["direct_to_billing_provider", "aws_sqs", "tackle", "aws_sns"]
ConfigurationValue = str | bool | int


class BillingProviderConfiguration(BaseModel):
    """One billing destination for the customer, as the API's request body spells it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    billing_provider: str
    delivery_method: DeliveryMethod
    configuration: dict[str, ConfigurationValue] = Field(default_factory=dict)

    def identity(self) -> tuple[str, str]:
        """What makes two configurations "the same one" when deciding whether to add it.

        Metronome appends on every set call, so re-sending a configuration creates a second
        one; we compare on provider plus delivery method plus the canonical configuration.
        """
        return (self.billing_provider, _canonical(self.configuration) + self.delivery_method)


class DesiredCustomer(BaseModel):
    """The customer one Salesforce account maps to.

    ``salesforce_account_id`` is the 18-character id of the account that owns the customer
    (the top-most parent when hierarchy roll-up is on). ``identity_alias`` is the ingest alias
    derived from that id, unique by construction: it makes a second create fail
    with 409 and lets a re-read find the first. ``ingest_aliases`` includes it.
    ``archive_billing_providers`` is the only way a sync may archive anything: the mapping must
    name the provider explicitly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    salesforce_account_id: str
    name: str
    ingest_aliases: tuple[str, ...] = ()
    identity_alias: str | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)
    billing_provider_configurations: tuple[BillingProviderConfiguration, ...] = ()
    archive_billing_providers: tuple[str, ...] = ()
    #: Accounts whose records contributed (the child accounts under roll-up); for the ledger.
    source_account_ids: tuple[str, ...] = ()

    def __hash__(self) -> int:
        # pydantic's frozen hash would hash the dict fields and fail; hash by content instead.
        return hash(self.canonical_json())

    def canonical(self) -> dict[str, Any]:
        """The order-independent form: aliases and configurations sorted and de-duplicated.

        Set semantics are the API's: ``setIngestAliases`` stores a set, and two identical
        billing configurations are one destination, so neither order nor repeats may change
        the dedupe hash. ``source_account_ids`` is left out on purpose: it is provenance for
        the ledger, not state Metronome holds, and a child's contribution already shows up in
        its aliases.
        """
        return {
            "salesforce_account_id": self.salesforce_account_id,
            "name": self.name,
            "ingest_aliases": sorted(set(self.ingest_aliases)),
            "identity_alias": self.identity_alias,
            "custom_fields": dict(sorted(self.custom_fields.items())),
            "billing_provider_configurations": [
                json.loads(text)
                for text in sorted(
                    {
                        _canonical(
                            {
                                "billing_provider": c.billing_provider,
                                "delivery_method": c.delivery_method,
                                "configuration": dict(sorted(c.configuration.items())),
                            }
                        )
                        for c in self.billing_provider_configurations
                    }
                )
            ],
            "archive_billing_providers": sorted(set(self.archive_billing_providers)),
        }

    def canonical_json(self) -> str:
        return _canonical(self.canonical())

    def state_hash(self) -> str:
        """sha256 of the canonical JSON: equal customers, equal hashes (the dedupe key)."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
