"""The canonical form and dedupe hash of a desired customer."""

from __future__ import annotations

import json

from mappings import BillingProviderConfiguration, DesiredCustomer

AWS = BillingProviderConfiguration(
    billing_provider="aws_marketplace",
    delivery_method="direct_to_billing_provider",
    configuration={"aws_customer_id": "A", "aws_product_code": "p", "aws_region": "us-west-1"},
)
STRIPE = BillingProviderConfiguration(
    billing_provider="stripe",
    delivery_method="direct_to_billing_provider",
    configuration={"stripe_customer_id": "cus", "stripe_collection_method": "send_invoice"},
)


def customer(**changes: object) -> DesiredCustomer:
    fields: dict[str, object] = {
        "salesforce_account_id": "001000000000001AAA",
        "name": "WidgetsExpress",
        "ingest_aliases": ("team@widgetsexpress.com", "salesforce:001000000000001AAA"),
        "identity_alias": "salesforce:001000000000001AAA",
        "custom_fields": {"sfdc_account_id": "001000000000001AAA", "tier": "gold"},
        "billing_provider_configurations": (AWS, STRIPE),
    }
    fields.update(changes)
    return DesiredCustomer.model_validate(fields)


def test_hash_ignores_alias_order_and_repeats() -> None:
    reordered = customer(
        ingest_aliases=(
            "salesforce:001000000000001AAA",
            "team@widgetsexpress.com",
            "team@widgetsexpress.com",
        )
    )
    assert reordered.state_hash() == customer().state_hash()


def test_hash_ignores_configuration_order_key_order_and_repeats() -> None:
    stripe_reordered = BillingProviderConfiguration(
        billing_provider="stripe",
        delivery_method="direct_to_billing_provider",
        configuration={"stripe_collection_method": "send_invoice", "stripe_customer_id": "cus"},
    )
    other = customer(billing_provider_configurations=(stripe_reordered, AWS, AWS))
    assert other.state_hash() == customer().state_hash()


def test_hash_ignores_custom_field_insertion_order() -> None:
    other = customer(custom_fields={"tier": "gold", "sfdc_account_id": "001000000000001AAA"})
    assert other.state_hash() == customer().state_hash()


def test_hash_changes_with_any_state_change() -> None:
    base = customer().state_hash()
    changed = [
        customer(name="WidgetsExpress Inc"),
        customer(ingest_aliases=("team@widgetsexpress.com",)),
        customer(custom_fields={"sfdc_account_id": "001000000000001AAA", "tier": "silver"}),
        customer(billing_provider_configurations=(AWS,)),
        customer(archive_billing_providers=("stripe",)),
        customer(identity_alias=None),
    ]
    hashes = {c.state_hash() for c in changed}
    assert base not in hashes
    assert len(hashes) == len(changed)


def test_config_value_types_are_distinguished() -> None:
    def with_flag(flag: object) -> DesiredCustomer:
        config = AWS.model_copy(
            update={"configuration": {**AWS.configuration, "aws_is_subscription_product": flag}}
        )
        return customer(billing_provider_configurations=(config,))

    assert with_flag(True).state_hash() != with_flag("true").state_hash()


def test_source_accounts_are_provenance_not_state() -> None:
    assert customer(source_account_ids=("x",)).state_hash() == customer().state_hash()


def test_canonical_json_is_compact_sorted_and_parses_back() -> None:
    text = customer().canonical_json()
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert parsed["ingest_aliases"] == sorted(parsed["ingest_aliases"])
    assert " " not in text.replace("WidgetsExpress", "")


def test_equal_customers_are_hashable_and_equal_as_set_members() -> None:
    assert len({customer(), customer()}) == 1
