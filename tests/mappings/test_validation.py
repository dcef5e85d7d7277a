"""A record that cannot become a valid customer fails whole, with every problem listed."""

from __future__ import annotations

import pytest

from mappings import MappingError, load_default_mapping, parse_mapping
from mappings.constraints import AWS_REGIONS
from tests.support.mapping_records import WIDGETS_ACCOUNT_ID, WIDGETS_OPPORTUNITY_ID, widgets_record

DEFAULT = load_default_mapping()

MANY_ALIASES = parse_mapping(
    """
name: {field: Account.Name}
ingest_aliases:
"""
    + "".join(f"  - {{format: 'a{i}-{{Account.Id}}'}}\n" for i in range(2001))
)


def problems_of(record: dict[str, object], mapping: object = DEFAULT) -> dict[str, str]:
    with pytest.raises(MappingError) as caught:
        mapping.map_record(record)  # type: ignore[attr-defined]
    assert caught.value.record_id == WIDGETS_OPPORTUNITY_ID
    assert WIDGETS_OPPORTUNITY_ID in str(caught.value)
    return dict(caught.value.problems)


def test_every_problem_is_reported_at_once() -> None:
    record = widgets_record(
        Name="   ",
        Billing_Email__c="x" * 129,
        AWS_Region__c="us-west-9",
        AWS_Product_Code__c=None,
    )
    problems = problems_of(record)
    assert set(problems) == {
        "name",
        "ingest_aliases[0]",
        "billing_provider_configurations[0].configuration.aws_region",
        "billing_provider_configurations[0].configuration.aws_product_code",
    }
    assert "129 characters" in problems["ingest_aliases[0]"]
    assert (
        "Account.AWS_Region__c"
        in problems["billing_provider_configurations[0].configuration.aws_region"]
    )


def test_missing_name() -> None:
    assert set(problems_of(widgets_record(Name=None))) == {"name"}


def test_alias_of_exactly_128_characters_is_fine() -> None:
    alias = "a" * 128
    assert alias in DEFAULT.map_record(widgets_record(Billing_Email__c=alias)).ingest_aliases


def test_more_than_2000_aliases() -> None:
    problems = problems_of(widgets_record(), MANY_ALIASES)
    assert "2002 aliases" in problems["ingest_aliases"]


def test_custom_field_over_200_characters() -> None:
    mapping = parse_mapping(
        "name: {field: Account.Name}\ncustom_fields:\n  website: {field: Account.Website}\n"
    )
    assert mapping.map_record(widgets_record(Website="w" * 200)).custom_fields["website"]
    problems = problems_of(widgets_record(Website="w" * 201), mapping)
    assert set(problems) == {"custom_fields.website"}


@pytest.mark.parametrize("region", sorted(AWS_REGIONS))
def test_every_api_region_is_accepted(region: str) -> None:
    desired = DEFAULT.map_record(widgets_record(AWS_Region__c=region))
    assert desired.billing_provider_configurations[0].configuration["aws_region"] == region


@pytest.mark.parametrize("region", ["us-west-3", "eu-west-4", "uswest1", "global"])
def test_regions_outside_the_api_list_are_refused(region: str) -> None:
    assert set(problems_of(widgets_record(AWS_Region__c=region))) == {
        "billing_provider_configurations[0].configuration.aws_region"
    }


def test_aws_regions_are_the_sdk_enum() -> None:
    import typing

    from metronome.types.v1 import customer_create_params

    hints = typing.get_type_hints(customer_create_params.BillingConfig)
    assert set(typing.get_args(hints["aws_region"])) == AWS_REGIONS


def test_stripe_collection_method_outside_the_enum_is_refused() -> None:
    record = widgets_record(
        Billing_Provider__c="stripe",
        Stripe_Customer_Id__c="cus_1",
        Stripe_Collection_Method__c="cash",
    )
    assert set(problems_of(record)) == {
        "billing_provider_configurations[3].configuration.stripe_collection_method"
    }


def test_each_missing_required_key_is_named() -> None:
    record = widgets_record(Billing_Provider__c="gcp_marketplace")
    assert set(problems_of(record)) == {
        "billing_provider_configurations[2].configuration.gcp_entitlement_id",
        "billing_provider_configurations[2].configuration.gcp_service_name",
    }


def test_name_is_truncated_to_what_metronome_stores() -> None:
    desired = DEFAULT.map_record(widgets_record(Name="N" * 500))
    assert desired.name == "N" * 160


def test_control_characters_in_a_name_become_spaces_and_nothing_else_changes() -> None:
    desired = DEFAULT.map_record(widgets_record(Name="Tab\tNew\nline\x00nul\x1b[31m\x85"))
    assert desired.name == "Tab New line nul [31m "
    kept = "  Acme  Inc. — Zürich 🚀 "
    assert DEFAULT.map_record(widgets_record(Name=kept)).name == kept  # same text, same hash


def test_a_name_of_control_characters_only_is_no_name() -> None:
    assert set(problems_of(widgets_record(Name="\x00\x07\n"))) == {"name"}


def test_an_object_where_a_field_was_expected_is_a_problem_not_a_crash() -> None:
    problems = problems_of(widgets_record(Billing_Email__c={"nested": True}))
    assert set(problems) == {"ingest_aliases[0]"}


def test_a_non_object_account_is_a_problem() -> None:
    record = widgets_record()
    record["Account"] = "001"
    assert set(problems_of(record)) == {"Account"}


def test_sfdc_account_id_ignores_what_the_file_says() -> None:
    mapping = parse_mapping(
        "name: {field: Account.Name}\ncustom_fields:\n  sfdc_account_id: {literal: sfdc1001}\n"
    )
    assert mapping.notes
    desired = mapping.map_record(widgets_record())
    assert desired.custom_fields == {"sfdc_account_id": WIDGETS_ACCOUNT_ID}
