"""The pure half of the upsert: desired vs actual -> the smallest list of Metronome calls.

No I/O here, so ``crmsync plan`` can print exactly what a sync would do, and the rules below
are unit-tested without a server:

- a new customer is one create carrying aliases, custom fields and billing configurations,
  then ``updateConfig(salesforce_account_id)`` -- the create body cannot set it (the spec's
  POST /v1/customers has no ``customer_config``), and the link makes later finds one
  batched ``list(salesforce_account_ids=...)``;
- names compare as stored (truncated to 160), or a long name is "renamed" on every poll;
- aliases are only ever added (setIngestAliases replaces the set, so we send the union);
- custom fields: only changed keys (setValues merges by key);
- billing configurations: only missing ones (the set endpoint appends), and nothing is
  archived unless ``archive_billing_providers`` names the provider (archiving one that a live
  contract uses stops billing at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mappings.desired import BillingProviderConfiguration, DesiredCustomer
from worker.metronome.actual import CustomerState, canonical_json
from worker.metronome.errors import UnresolvableConflictError

NAME_MAX = 160


@dataclass(frozen=True, slots=True)
class CreateCustomer:
    name: str
    ingest_aliases: tuple[str, ...]
    custom_fields: dict[str, str]
    billing_provider_configurations: tuple[dict[str, Any], ...]
    operation = "create"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "ingest_aliases": list(self.ingest_aliases)}
        if self.custom_fields:
            body["custom_fields"] = dict(self.custom_fields)
        if self.billing_provider_configurations:
            body["customer_billing_provider_configurations"] = [
                dict(c) for c in self.billing_provider_configurations
            ]
        return body

    def change(self) -> str:
        extra = len(self.billing_provider_configurations)
        return f"create (+{extra} billing configurations)" if extra else "create"


@dataclass(frozen=True, slots=True)
class LinkSalesforceAccount:
    salesforce_account_id: str
    operation = "updateConfig"

    def body(self) -> dict[str, Any]:
        return {"salesforce_account_id": self.salesforce_account_id}

    def change(self) -> str:
        return "updateConfig"


@dataclass(frozen=True, slots=True)
class SetName:
    name: str
    operation = "setName"

    def body(self) -> dict[str, Any]:
        return {"name": self.name}

    def change(self) -> str:
        return "setName"


@dataclass(frozen=True, slots=True)
class SetIngestAliases:
    ingest_aliases: tuple[str, ...]
    added: tuple[str, ...]
    operation = "setIngestAliases"

    def body(self) -> dict[str, Any]:
        return {"ingest_aliases": list(self.ingest_aliases)}

    def change(self) -> str:
        return f"setIngestAliases +{len(self.added)}"


@dataclass(frozen=True, slots=True)
class SetCustomFields:
    values: dict[str, str]
    operation = "setValues"

    def body(self) -> dict[str, Any]:
        return {"custom_fields": dict(self.values)}

    def change(self) -> str:
        return f"setValues {','.join(sorted(self.values))}"


@dataclass(frozen=True, slots=True)
class AddBillingConfigurations:
    configurations: tuple[dict[str, Any], ...]
    operation = "setCustomerBillingProviderConfigurations"

    def body(self) -> dict[str, Any]:
        return {"data": [dict(c) for c in self.configurations]}

    def change(self) -> str:
        providers = ",".join(sorted({str(c["billing_provider"]) for c in self.configurations}))
        return f"setCustomerBillingProviderConfigurations +{len(self.configurations)} {providers}"


@dataclass(frozen=True, slots=True)
class ArchiveBillingConfigurations:
    configuration_ids: tuple[str, ...]
    providers: tuple[str, ...]
    operation = "archiveCustomerBillingProviderConfigurations"

    def body(self) -> dict[str, Any]:
        return {"customer_billing_provider_configuration_ids": list(self.configuration_ids)}

    def change(self) -> str:
        return (
            f"archiveCustomerBillingProviderConfigurations {len(self.configuration_ids)} "
            f"{','.join(self.providers)}"
        )


Step = (
    CreateCustomer
    | LinkSalesforceAccount
    | SetName
    | SetIngestAliases
    | SetCustomFields
    | AddBillingConfigurations
    | ArchiveBillingConfigurations
)


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The calls one sync will make for one account, in order."""

    salesforce_account_id: str
    customer_id: str | None
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def is_noop(self) -> bool:
        return not self.steps

    def changes(self) -> tuple[str, ...]:
        return tuple(step.change() for step in self.steps)

    def describe(self) -> list[str]:
        """One line per call, for ``crmsync plan``."""
        target = self.customer_id or "(new customer)"
        if not self.steps:
            return [f"{self.salesforce_account_id}: {target} is up to date"]
        return [
            f"{self.salesforce_account_id}: {target} {step.operation} {canonical_json(step.body())}"
            for step in self.steps
        ]


def stored_name(name: str) -> str:
    """The name as Metronome keeps it (POST /v1/customers truncates to 160 characters)."""
    return name[:NAME_MAX]


def needs_billing_configurations(desired: DesiredCustomer) -> bool:
    """Whether planning must know the customer's billing configurations (a call to fetch)."""
    return bool(desired.billing_provider_configurations or desired.archive_billing_providers)


def plan_sync(desired: DesiredCustomer, actual: CustomerState | None) -> SyncPlan:
    """The calls that make ``actual`` hold ``desired`` (create when there is no customer).

    Raises UnresolvableConflictError when ``actual`` belongs to another Salesforce account or
    is archived: the engine never adopts those, so reaching here with one is a bug upstream.
    """
    wanted_configs = [
        c
        for c in desired.billing_provider_configurations
        if c.billing_provider not in desired.archive_billing_providers
    ]
    if actual is None:
        return SyncPlan(
            desired.salesforce_account_id,
            None,
            (
                CreateCustomer(
                    name=desired.name,
                    ingest_aliases=_unique(desired.ingest_aliases),
                    custom_fields=dict(desired.custom_fields),
                    billing_provider_configurations=tuple(_body(c) for c in wanted_configs),
                ),
                LinkSalesforceAccount(desired.salesforce_account_id),
            ),
        )
    _check_adoptable(desired, actual)
    steps: list[Step] = []
    if actual.salesforce_account_id != desired.salesforce_account_id:
        steps.append(LinkSalesforceAccount(desired.salesforce_account_id))
    added = tuple(a for a in _unique(desired.ingest_aliases) if a not in actual.ingest_aliases)
    if added:
        steps.append(SetIngestAliases(actual.ingest_aliases + added, added))
    if stored_name(desired.name) != actual.name:
        steps.append(SetName(desired.name))
    changed = {k: v for k, v in desired.custom_fields.items() if actual.custom_fields.get(k) != v}
    if changed:
        steps.append(SetCustomFields(changed))
    if needs_billing_configurations(desired):
        steps.extend(_billing_steps(desired, actual, wanted_configs))
    return SyncPlan(desired.salesforce_account_id, actual.id, tuple(steps))


def _billing_steps(
    desired: DesiredCustomer,
    actual: CustomerState,
    wanted: list[BillingProviderConfiguration],
) -> list[Step]:
    if actual.billing_configurations is None:
        raise ValueError("billing configurations must be fetched before planning them")
    live = [c for c in actual.billing_configurations if not c.archived]
    have = {c.identity() for c in live}
    missing: list[dict[str, Any]] = []
    for config in wanted:
        body = _body(config)
        identity = (
            config.billing_provider,
            config.delivery_method,
            canonical_json(body["configuration"]),
        )
        if identity not in have:
            have.add(identity)
            missing.append(body)
    steps: list[Step] = []
    if missing:
        steps.append(AddBillingConfigurations(tuple(missing)))
    doomed = [c for c in live if c.billing_provider in desired.archive_billing_providers]
    if doomed:
        steps.append(
            ArchiveBillingConfigurations(
                tuple(c.id for c in doomed), tuple(sorted({c.billing_provider for c in doomed}))
            )
        )
    return steps


def _check_adoptable(desired: DesiredCustomer, actual: CustomerState) -> None:
    if actual.archived:
        raise UnresolvableConflictError(
            f"customer {actual.id} for Salesforce account {desired.salesforce_account_id} is "
            "archived in Metronome; un-archive or re-map it by hand",
            customer_ids=(actual.id,),
        )
    linked = actual.salesforce_account_id
    if linked is not None and linked != desired.salesforce_account_id:
        raise UnresolvableConflictError(
            f"customer {actual.id} is linked to Salesforce account {linked}, not "
            f"{desired.salesforce_account_id}",
            customer_ids=(actual.id,),
        )


def _body(config: BillingProviderConfiguration) -> dict[str, Any]:
    return {
        "billing_provider": config.billing_provider,
        "delivery_method": config.delivery_method,
        "configuration": dict(config.configuration),
    }


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
