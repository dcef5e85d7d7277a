"""Hierarchy roll-up: a child's won deal maps to its top-most parent's customer."""

from __future__ import annotations

from typing import Any

import pytest

from mappings import MappingError, MappingFileError, load_default_mapping, parse_mapping
from tests.support.mapping_records import account_id, widgets_record

BASE = load_default_mapping()
ROLLUP = BASE.model_copy(
    update={"hierarchy_rollup": BASE.hierarchy_rollup.model_copy(update={"enabled": True})}
)
CHILD, MIDDLE, TOP = account_id(1), account_id(2), account_id(3)


def chain(*levels: dict[str, Any]) -> dict[str, Any]:
    """Nest accounts child-first, as SOQL relationship fields come back."""
    parent: dict[str, Any] | None = None
    for level in reversed(levels):
        parent = {**level, "Parent": parent, "ParentId": parent["Id"] if parent else None}
    assert parent is not None
    return parent


def child_record() -> dict[str, Any]:
    record = widgets_record()
    record["AccountId"] = CHILD
    record["Account"] = chain(
        {
            "Id": CHILD,
            "Name": "Widgets EMEA",
            "Billing_Email__c": "emea@widgetsexpress.com",
            "Billing_Provider__c": "stripe",
            "Stripe_Customer_Id__c": "cus_child",
        },
        {"Id": MIDDLE, "Name": "Widgets Europe"},
        {
            "Id": TOP,
            "Name": "Widgets Holdings",
            "Billing_Email__c": "billing@widgets.com",
            "Billing_Provider__c": "aws_marketplace",
            "AWS_Customer_Id__c": "TOP123",
            "AWS_Product_Code__c": "my_product",
            "AWS_Region__c": "eu-west-1",
        },
    )
    return record


def test_child_maps_to_the_top_parent_with_its_aliases_added() -> None:
    desired = ROLLUP.map_record(child_record())
    assert desired.salesforce_account_id == TOP
    assert desired.name == "Widgets Holdings"
    assert desired.identity_alias == f"salesforce:{TOP}"
    assert desired.custom_fields == {"sfdc_account_id": TOP}
    assert desired.ingest_aliases == (
        "billing@widgets.com",
        f"salesforce:{TOP}",
        "emea@widgetsexpress.com",
        CHILD,
    )
    assert desired.source_account_ids == (TOP, CHILD)


def test_billing_configurations_come_from_the_top_parent_only() -> None:
    # The contract lives on the enterprise customer: the child's Stripe settings do not apply.
    [config] = ROLLUP.map_record(child_record()).billing_provider_configurations
    assert config.billing_provider == "aws_marketplace"
    assert config.configuration["aws_customer_id"] == "TOP123"


def test_off_by_default_the_child_is_its_own_customer() -> None:
    desired = BASE.map_record(child_record())
    assert desired.salesforce_account_id == CHILD
    assert desired.name == "Widgets EMEA"


def test_an_account_without_parent_is_unchanged_by_rollup() -> None:
    assert ROLLUP.map_record(widgets_record()) == BASE.map_record(widgets_record())


def test_two_children_of_one_parent_give_the_same_customer_identity() -> None:
    first = ROLLUP.map_record(child_record())
    other = child_record()
    other["Account"]["Id"] = account_id(9)
    second = ROLLUP.map_record(other)
    assert first.salesforce_account_id == second.salesforce_account_id == TOP
    assert first.identity_alias == second.identity_alias


def test_a_cycle_is_an_error() -> None:
    record = child_record()
    record["Account"]["Parent"]["Parent"]["Parent"] = {"Id": CHILD, "Name": "again"}
    with pytest.raises(MappingError) as caught:
        ROLLUP.map_record(record)
    [(path, message)] = caught.value.problems
    assert path == "Account.Parent.Parent.Parent.Id"
    assert "cycle" in message


def test_deeper_than_the_limit_is_an_error() -> None:
    shallow = ROLLUP.model_copy(
        update={"hierarchy_rollup": ROLLUP.hierarchy_rollup.model_copy(update={"max_depth": 1})}
    )
    with pytest.raises(MappingError, match="deeper than max_depth 1"):
        shallow.map_record(child_record())


def test_a_parent_id_beyond_the_queried_chain_is_an_error() -> None:
    record = child_record()
    record["Account"]["Parent"]["Parent"]["ParentId"] = account_id(4)  # not fetched
    shallow = parse_mapping(
        "name: {field: Account.Name}\nhierarchy_rollup: {enabled: true, max_depth: 2}\n"
    )
    with pytest.raises(MappingError, match="deeper than max_depth 2"):
        shallow.map_record(record)


def test_the_query_reads_every_mapped_account_field_on_every_ancestor() -> None:
    mapping = parse_mapping(
        "name: {field: Account.Name}\n"
        "ingest_aliases: [{field: Account.Billing_Email__c}]\n"
        "hierarchy_rollup: {enabled: true, max_depth: 2}\n"
    )
    assert mapping.opportunity_fields() == [
        "Id",
        "AccountId",
        "Account.Id",
        "Account.Name",
        "Account.Billing_Email__c",
        "Account.Parent.Id",
        "Account.Parent.Name",
        "Account.Parent.Billing_Email__c",
        "Account.Parent.Parent.Id",
        "Account.Parent.Parent.Name",
        "Account.Parent.Parent.Billing_Email__c",
        "Account.Parent.Parent.ParentId",
    ]


def test_depth_is_capped_by_soql_relationship_limit() -> None:
    with pytest.raises(MappingFileError, match="max_depth"):
        parse_mapping(
            "name: {field: Account.Name}\nhierarchy_rollup: {enabled: true, max_depth: 5}\n"
        )


def test_a_mapped_parent_path_that_would_exceed_five_hops_is_refused() -> None:
    with pytest.raises(MappingFileError, match="relationship hops"):
        parse_mapping(
            "name: {field: Account.Parent.Name}\nhierarchy_rollup: {enabled: true, max_depth: 4}\n"
        )


def test_child_alias_format_may_not_equal_the_identity_format() -> None:
    with pytest.raises(MappingFileError, match="child_alias_format"):
        parse_mapping(
            "name: {field: Account.Name}\n"
            "identity_alias: {format: 'sf:{account_id}'}\n"
            "hierarchy_rollup: {enabled: true, child_alias_format: 'sf:{account_id}'}\n"
        )


def test_a_childs_deal_becomes_a_contract_billed_through_the_top_parents_configuration() -> None:
    record = child_record()
    record.update({"CloseDate": "2026-03-15", "Metronome_Rate_Card__c": "standard"})
    customer = ROLLUP.map_record(record)
    contract = ROLLUP.map_contract(record, customer)
    assert contract is not None
    assert contract.salesforce_account_id == TOP
    # The child's own picklist says stripe; the customer holds the parent's AWS configuration.
    assert contract.billing_provider == "aws_marketplace"
    assert contract.salesforce_opportunity_id == record["Id"]
