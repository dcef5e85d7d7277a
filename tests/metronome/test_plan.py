"""The pure planner: desired vs actual -> the smallest list of calls, no server involved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.desired import BillingProviderConfiguration
from tests.support.metronome_emulator import STRIPE, make_desired
from worker.metronome.actual import BillingConfigurationState, CustomerState
from worker.metronome.errors import UnresolvableConflictError
from worker.metronome.idempotency import InMemoryGenerations, idempotency_key
from worker.metronome.plan import (
    AddBillingConfigurations,
    ArchiveBillingConfigurations,
    CreateCustomer,
    LinkSalesforceAccount,
    SetCustomFields,
    SetIngestAliases,
    SetName,
    plan_sync,
)

ACCOUNT = "001000000000001AAA"
IDENTITY = f"sfdc:{ACCOUNT}"


def in_sync(**changes: object) -> CustomerState:
    base: dict[str, object] = {
        "id": "c-1",
        "name": "Acme Corp",
        "ingest_aliases": (IDENTITY,),
        "custom_fields": {"sfdc_account_id": ACCOUNT},
        "salesforce_account_id": ACCOUNT,
        "billing_configurations": (),
    }
    base.update(changes)
    return CustomerState(**base)  # type: ignore[arg-type]


def stripe_state(config_id: str = "b-1", **changes: object) -> BillingConfigurationState:
    fields: dict[str, object] = {
        "id": config_id,
        "billing_provider": "stripe",
        "delivery_method": "direct_to_billing_provider",
        "configuration": dict(STRIPE.configuration),
    }
    fields.update(changes)
    return BillingConfigurationState(**fields)  # type: ignore[arg-type]


def test_no_customer_plans_create_with_inline_billing_then_link() -> None:
    plan = plan_sync(make_desired(aliases=("x", IDENTITY), billing=(STRIPE,)), None)

    create, link = plan.steps
    assert isinstance(create, CreateCustomer)
    assert create.ingest_aliases == (IDENTITY, "x")  # identity alias first, no duplicates
    assert create.body()["custom_fields"] == {"sfdc_account_id": ACCOUNT}
    assert create.body()["customer_billing_provider_configurations"] == [
        {
            "billing_provider": "stripe",
            "delivery_method": "direct_to_billing_provider",
            "configuration": dict(STRIPE.configuration),
        }
    ]
    assert link == LinkSalesforceAccount(ACCOUNT)
    assert plan.customer_id is None
    assert plan.changes() == ("create (+1 billing configurations)", "updateConfig")


def test_customer_already_right_plans_nothing() -> None:
    plan = plan_sync(
        make_desired(billing=(STRIPE,)), in_sync(billing_configurations=(stripe_state(),))
    )
    assert plan.is_noop
    assert plan.describe() == [f"{ACCOUNT}: c-1 is up to date"]


def test_name_compares_as_stored_truncated_to_160() -> None:
    long_name = "N" * 170
    assert plan_sync(make_desired(name=long_name), in_sync(name="N" * 160)).is_noop
    renamed = plan_sync(make_desired(name="Acme Inc"), in_sync())
    assert renamed.steps == (SetName("Acme Inc"),)


def test_aliases_are_added_as_a_union_never_removed() -> None:
    actual = in_sync(ingest_aliases=(IDENTITY, "manual"))
    plan = plan_sync(make_desired(aliases=("new",)), actual)
    assert plan.steps == (SetIngestAliases((IDENTITY, "manual", "new"), ("new",)),)
    # A desired state with fewer aliases than Metronome holds changes nothing.
    assert plan_sync(make_desired(), actual).is_noop


def test_only_changed_custom_fields_are_sent() -> None:
    desired = make_desired().model_copy(
        update={"custom_fields": {"sfdc_account_id": ACCOUNT, "tier": "gold", "region": "eu"}}
    )
    actual = in_sync(custom_fields={"sfdc_account_id": ACCOUNT, "tier": "gold", "region": "us"})
    assert plan_sync(desired, actual).steps == (SetCustomFields({"region": "eu"}),)


def test_unlinked_customer_is_linked_first() -> None:
    plan = plan_sync(make_desired(), in_sync(salesforce_account_id=None))
    assert plan.steps == (LinkSalesforceAccount(ACCOUNT),)


def test_customer_of_another_account_is_refused() -> None:
    with pytest.raises(UnresolvableConflictError, match="linked to Salesforce account 001OTHER"):
        plan_sync(make_desired(), in_sync(salesforce_account_id="001OTHER"))


def test_archived_customer_is_refused() -> None:
    with pytest.raises(UnresolvableConflictError, match="archived"):
        plan_sync(make_desired(), in_sync(archived=True))


def test_billing_only_missing_configurations_are_added() -> None:
    netsuite = BillingProviderConfiguration(
        billing_provider="netsuite",
        delivery_method="direct_to_billing_provider",
        configuration={"netsuite_customer_id": "ns-1"},
    )
    actual = in_sync(billing_configurations=(stripe_state(),))
    plan = plan_sync(make_desired(billing=(STRIPE, netsuite)), actual)
    assert plan.steps == (
        AddBillingConfigurations(
            (
                {
                    "billing_provider": "netsuite",
                    "delivery_method": "direct_to_billing_provider",
                    "configuration": {"netsuite_customer_id": "ns-1"},
                },
            )
        ),
    )


def test_archived_configuration_does_not_count_as_present() -> None:
    actual = in_sync(billing_configurations=(stripe_state(archived=True),))
    plan = plan_sync(make_desired(billing=(STRIPE,)), actual)
    assert [type(s) for s in plan.steps] == [AddBillingConfigurations]


def test_nothing_is_archived_unless_the_mapping_names_the_provider() -> None:
    actual = in_sync(billing_configurations=(stripe_state("b-1"), stripe_state("b-2")))
    assert plan_sync(make_desired(), actual).is_noop
    plan = plan_sync(make_desired(archive_billing_providers=("stripe",)), actual)
    assert plan.steps == (ArchiveBillingConfigurations(("b-1", "b-2"), ("stripe",)),)


def test_planning_billing_without_fetching_them_is_a_bug() -> None:
    with pytest.raises(ValueError, match="fetched"):
        plan_sync(make_desired(billing=(STRIPE,)), in_sync(billing_configurations=None))


def test_describe_prints_one_line_per_call() -> None:
    lines = plan_sync(make_desired(name="Acme Inc", aliases=("new",)), in_sync()).describe()
    assert lines == [
        f'{ACCOUNT}: c-1 setIngestAliases {{"ingest_aliases":["{IDENTITY}","new"]}}',
        f'{ACCOUNT}: c-1 setName {{"name":"Acme Inc"}}',
    ]


def test_idempotency_keys_are_deterministic_and_change_with_generation() -> None:
    generations = InMemoryGenerations()
    key = idempotency_key(ACCOUNT, "hash", generations.current(ACCOUNT), "create ", "{}")
    assert key == idempotency_key(ACCOUNT, "hash", 0, "create ", "{}")
    assert generations.bump(ACCOUNT) == 1
    assert key != idempotency_key(ACCOUNT, "hash", generations.current(ACCOUNT), "create ", "{}")
    assert key != idempotency_key(ACCOUNT, "hash", 0, "setName c-1", "{}")


def _applied(actual: CustomerState, plan_steps: tuple[object, ...]) -> CustomerState:
    """What Metronome would hold after the steps (its documented semantics, simplified)."""
    aliases, name, fields, linked = (
        actual.ingest_aliases,
        actual.name,
        dict(actual.custom_fields),
        actual.salesforce_account_id,
    )
    for step in plan_steps:
        if isinstance(step, SetIngestAliases):
            aliases = step.ingest_aliases
        elif isinstance(step, SetName):
            name = step.name[:160]
        elif isinstance(step, SetCustomFields):
            fields.update(step.values)
        elif isinstance(step, LinkSalesforceAccount):
            linked = step.salesforce_account_id
    return CustomerState(
        id=actual.id,
        name=name,
        ingest_aliases=aliases,
        custom_fields=fields,
        salesforce_account_id=linked,
        billing_configurations=(),
    )


_alias = st.text(alphabet="abcxyz", min_size=1, max_size=3)


@given(
    existing=st.lists(_alias, max_size=5, unique=True),
    wanted=st.lists(_alias, max_size=5),
    name=st.text(min_size=1, max_size=200),
    stored_name=st.text(min_size=1, max_size=160),
    linked=st.sampled_from([None, ACCOUNT]),
)
def test_one_plan_converges_and_never_drops_an_alias(
    existing: list[str], wanted: list[str], name: str, stored_name: str, linked: str | None
) -> None:
    actual = in_sync(ingest_aliases=tuple(existing), name=stored_name, salesforce_account_id=linked)
    desired = make_desired(name=name, aliases=tuple(wanted))
    after = _applied(actual, plan_sync(desired, actual).steps)

    assert set(existing) <= set(after.ingest_aliases)
    assert set(desired.ingest_aliases) <= set(after.ingest_aliases)
    assert len(after.ingest_aliases) == len(set(after.ingest_aliases))
    assert plan_sync(desired, after).is_noop
