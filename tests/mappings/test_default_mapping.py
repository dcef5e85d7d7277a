"""The packaged default mapping against the product documentation's example."""

from __future__ import annotations

from pathlib import Path

import pytest

from mappings import (
    BillingProviderConfiguration,
    DesiredCustomer,
    MappingError,
    load_default_mapping,
    parse_mapping,
    record_from_account,
)
from tests.support.mapping_records import WIDGETS_ACCOUNT_ID, WIDGETS_OPPORTUNITY_ID, widgets_record

MAPPING = load_default_mapping()


def test_widgets_express_gives_the_documented_payload() -> None:
    desired = MAPPING.map_record(widgets_record())
    identity = f"salesforce:{WIDGETS_ACCOUNT_ID}"
    assert desired == DesiredCustomer(
        salesforce_account_id=WIDGETS_ACCOUNT_ID,
        name="WidgetsExpress",
        # The documented alias, then the identity alias crmsync adds to every customer.
        ingest_aliases=("team@widgetsexpress.com", identity),
        identity_alias=identity,
        custom_fields={"sfdc_account_id": WIDGETS_ACCOUNT_ID},
        billing_provider_configurations=(
            BillingProviderConfiguration(
                billing_provider="aws_marketplace",
                configuration={
                    "aws_customer_id": "ABC123ABC12",
                    "aws_product_code": "my_product",
                    "aws_region": "us-west-1",
                },
                delivery_method="direct_to_billing_provider",
            ),
        ),
        source_account_ids=(WIDGETS_ACCOUNT_ID,),
    )


def test_the_documented_request_body_is_what_the_desired_customer_dumps_to() -> None:
    desired = MAPPING.map_record(widgets_record())
    dumped = desired.model_dump(mode="json")
    assert dumped["name"] == "WidgetsExpress"
    assert dumped["custom_fields"] == {"sfdc_account_id": WIDGETS_ACCOUNT_ID}
    assert dumped["billing_provider_configurations"] == [
        {
            "billing_provider": "aws_marketplace",
            "configuration": {
                "aws_customer_id": "ABC123ABC12",
                "aws_product_code": "my_product",
                "aws_region": "us-west-1",
            },
            "delivery_method": "direct_to_billing_provider",
        }
    ]


@pytest.mark.parametrize(
    ("provider", "fields", "configuration"),
    [
        (
            "azure_marketplace",
            {"Azure_Subscription_Id__c": "sub-1"},
            {"azure_subscription_id": "sub-1"},
        ),
        (
            "gcp_marketplace",
            {"GCP_Entitlement_Id__c": "ent-1", "GCP_Service_Name__c": "svc"},
            {"gcp_entitlement_id": "ent-1", "gcp_service_name": "svc"},
        ),
        (
            "stripe",
            {"Stripe_Customer_Id__c": "cus_1", "Stripe_Collection_Method__c": "send_invoice"},
            {"stripe_customer_id": "cus_1", "stripe_collection_method": "send_invoice"},
        ),
        (
            "stripe",
            {"Stripe_Customer_Id__c": "cus_1"},
            {"stripe_customer_id": "cus_1", "stripe_collection_method": "charge_automatically"},
        ),
        ("netsuite", {"NetSuite_Customer_Id__c": 12345.0}, {"netsuite_customer_id": "12345"}),
    ],
)
def test_the_picklist_picks_the_provider(
    provider: str, fields: dict[str, object], configuration: dict[str, object]
) -> None:
    desired = MAPPING.map_record(widgets_record(Billing_Provider__c=provider, **fields))
    [config] = desired.billing_provider_configurations
    assert config.billing_provider == provider
    assert config.delivery_method == "direct_to_billing_provider"
    assert config.configuration == configuration


def test_no_provider_means_no_configuration() -> None:
    desired = MAPPING.map_record(widgets_record(Billing_Provider__c=None))
    assert desired.billing_provider_configurations == ()


def test_no_billing_email_leaves_only_the_identity_alias() -> None:
    desired = MAPPING.map_record(widgets_record(Billing_Email__c="  "))
    assert desired.ingest_aliases == (f"salesforce:{WIDGETS_ACCOUNT_ID}",)


def test_billing_email_is_normalised() -> None:
    desired = MAPPING.map_record(widgets_record(Billing_Email__c=" Team@WidgetsExpress.COM "))
    assert desired.ingest_aliases[0] == "team@widgetsexpress.com"


def test_a_15_character_account_id_becomes_18() -> None:
    record = widgets_record(Id=WIDGETS_ACCOUNT_ID[:15])
    desired = MAPPING.map_record(record)
    assert desired.salesforce_account_id == WIDGETS_ACCOUNT_ID
    assert desired.custom_fields["sfdc_account_id"] == WIDGETS_ACCOUNT_ID


def test_an_invalid_account_id_is_a_mapping_error() -> None:
    record = widgets_record(Id="sfdc1001")
    record["AccountId"] = "sfdc1001"
    with pytest.raises(MappingError) as caught:
        MAPPING.map_record(record)
    assert caught.value.record_id == WIDGETS_OPPORTUNITY_ID
    assert [path for path, _ in caught.value.problems] == ["Account.Id"]


def test_account_id_falls_back_to_the_opportunity_account_id() -> None:
    record = widgets_record()
    del record["Account"]["Id"]
    assert MAPPING.map_record(record).salesforce_account_id == WIDGETS_ACCOUNT_ID


def test_the_query_field_list_is_exactly_what_the_mapping_reads() -> None:
    assert MAPPING.opportunity_fields() == [
        "Id",
        "AccountId",
        "Account.Id",
        "Account.Name",
        "Account.Billing_Email__c",
        "Account.Billing_Provider__c",
        "Account.AWS_Customer_Id__c",
        "Account.AWS_Product_Code__c",
        "Account.AWS_Region__c",
        "Account.Azure_Subscription_Id__c",
        "Account.GCP_Entitlement_Id__c",
        "Account.GCP_Service_Name__c",
        "Account.Stripe_Customer_Id__c",
        "Account.Stripe_Collection_Method__c",
        "Account.NetSuite_Customer_Id__c",
        "Metronome_Rate_Card__c",
        "Type",
        "Name",
        "Contract_Start_Date__c",
        "CloseDate",
        "Contract_Term_Months__c",
        "Metronome_Parent_Opportunity__c",
        "CurrencyIsoCode",
    ]
    # Line items are read by a subquery of the same query, on these fields.
    assert MAPPING.line_item_fields() == [
        "Id",
        "Product2.Metronome_Product_Id__c",
        "Product2.Metronome_Kind__c",
        "Quantity",
        "TotalPrice",
        "Discount",
        "Product2.Name",
    ]
    assert MAPPING.account_fields()[:3] == ["Id", "Name", "Billing_Email__c"]
    assert not MAPPING.rollup_enabled


def test_an_account_row_maps_like_its_opportunity() -> None:
    record = widgets_record()
    account_row = {field: record["Account"].get(field) for field in MAPPING.account_fields()}
    assert MAPPING.map_record(record_from_account(account_row)) == MAPPING.map_record(record)


def test_adding_a_field_to_the_mapping_adds_it_to_the_query() -> None:
    text = (Path(__file__).parents[2] / "mappings" / "default.yaml").read_text("utf-8")
    extended = parse_mapping(
        text.replace("custom_fields: {}", "custom_fields:\n  tier: {field: Account.Tier__c}")
    )
    before, after = MAPPING.opportunity_fields(), extended.opportunity_fields()
    assert [field for field in after if field != "Account.Tier__c"] == before
    assert len(after) == len(before) + 1
    assert "Tier__c" in extended.account_fields()
    desired = extended.map_record(widgets_record(Tier__c="gold"))
    assert desired.custom_fields["tier"] == "gold"


def test_whitespace_only_aliases_are_dropped() -> None:
    mapping = parse_mapping("name: {literal: X}\ningest_aliases: [{field: Account.Website}]\n")
    desired = mapping.map_record(widgets_record(Website="   "))
    assert desired.ingest_aliases == (f"salesforce:{WIDGETS_ACCOUNT_ID}",)
