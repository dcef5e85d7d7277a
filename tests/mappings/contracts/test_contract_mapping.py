"""The mapping's contract block: validation at load time and the pure deal → contract step."""

from __future__ import annotations

from typing import Any

import pytest

from mappings import MappingError, MappingFileError, load_default_mapping, parse_mapping
from mappings.contracts.desired import uniqueness_key
from mappings.contracts.engine import WON_OPPORTUNITIES_KEY, won_opportunity_rows
from mappings.ids import to_18
from tasks.poll import group_by_account
from tests.support.mapping_records import WIDGETS_ACCOUNT_ID, WIDGETS_OPPORTUNITY_ID, widgets_record

DEFAULT = load_default_mapping()
BASE = """
name: {field: Account.Name}
contract:
  pricing:
    rate_card_alias: {field: Metronome_Rate_Card__c}
"""


def deal(**fields: Any) -> dict[str, Any]:
    record = widgets_record()
    record.update(
        {"CloseDate": "2026-03-15", "Metronome_Rate_Card__c": "standard", **fields},
    )
    return record


def contract_of(record: dict[str, Any], mapping: Any = DEFAULT) -> Any:
    return mapping.map_contract(record, mapping.map_record(record))


def test_the_default_mapping_makes_the_documented_contract() -> None:
    contract = contract_of(deal(Contract_Term_Months__c=12.0))
    assert contract.uniqueness_key == f"crmsync:sfdc-opportunity:{WIDGETS_OPPORTUNITY_ID}"
    assert contract.pricing == "rate_card_alias" and contract.pricing_value == "standard"
    assert contract.starting_at == "2026-03-15T00:00:00Z"
    assert contract.ending_before == "2027-03-15T00:00:00Z"
    assert contract.billing_provider == "aws_marketplace"
    assert contract.custom_fields == {"sfdc_opportunity_id": WIDGETS_OPPORTUNITY_ID}
    body = contract.request_body("c-1", billing_configuration_id="bc-1", product_ids={})
    assert body == {
        "customer_id": "c-1",
        "starting_at": "2026-03-15T00:00:00Z",
        "ending_before": "2027-03-15T00:00:00Z",
        "uniqueness_key": contract.uniqueness_key,
        "rate_card_alias": "standard",
        "name": "WidgetsExpress - AWS Marketplace",
        "custom_fields": {"sfdc_opportunity_id": WIDGETS_OPPORTUNITY_ID},
        "billing_provider_configuration": {"billing_provider_configuration_id": "bc-1"},
    }


def test_a_deal_without_a_rate_card_gets_no_contract() -> None:
    assert contract_of(deal(Metronome_Rate_Card__c=None)) is None
    assert contract_of(deal(Metronome_Rate_Card__c="  ")) is None


def test_start_prefers_the_contract_start_date_and_an_empty_term_is_evergreen() -> None:
    contract = contract_of(deal(Contract_Start_Date__c="2026-04-01", Contract_Term_Months__c=None))
    assert contract.starting_at == "2026-04-01T00:00:00Z"
    assert contract.ending_before is None
    assert "ending_before" not in contract.request_body(
        "c", billing_configuration_id=None, product_ids={}
    )


def test_a_datetime_start_is_midnight_utc_of_its_utc_day() -> None:
    contract = contract_of(deal(CloseDate="2026-03-15T23:30:00.000-0300"))
    assert contract.starting_at == "2026-03-16T00:00:00Z"


def test_a_term_ending_past_the_months_last_day_is_clamped() -> None:
    contract = contract_of(deal(CloseDate="2026-01-31", Contract_Term_Months__c=1))
    assert contract.ending_before == "2026-02-28T00:00:00Z"


def test_an_account_without_a_billing_provider_gets_a_contract_without_one() -> None:
    record = deal()
    record["Account"]["Billing_Provider__c"] = None
    contract = contract_of(record)
    assert contract.billing_provider is None
    assert "billing_provider_configuration" not in contract.request_body(
        "c", billing_configuration_id=None, product_ids={}
    )


@pytest.mark.parametrize(
    ("fields", "where", "says"),
    [
        ({"CloseDate": "15/03/2026"}, "contract.starting_at", "is not a date"),
        ({"CloseDate": None}, "contract.starting_at", "no date"),
        ({"Contract_Term_Months__c": 1.5}, "contract.term_months", "not a whole number"),
        ({"Contract_Term_Months__c": 0}, "contract.term_months", "outside 1..240"),
    ],
)
def test_bad_deal_fields_are_one_error_naming_the_field(
    fields: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(MappingError) as caught:
        contract_of(deal(**fields))
    assert caught.value.record_id == WIDGETS_OPPORTUNITY_ID
    [(path, message)] = caught.value.problems
    assert path == where and says in message


COMMITS = (
    BASE
    + """
  commits:
    - product: {name: Prepaid commit}
      amount: {field: Prepaid_Commit_Amount__c}
      currency: {field: CurrencyIsoCode}
    - product: {id: 6a9b0c1d-0000-4000-8000-000000000001}
      amount: {literal: 500}
      invoiced: false
"""
)


def test_commits_are_integer_cents_invoiced_up_front_or_complimentary() -> None:
    mapping = parse_mapping(COMMITS)
    contract = contract_of(deal(Prepaid_Commit_Amount__c=1234.5, CurrencyIsoCode="USD"), mapping)
    first, second = contract.commits
    assert first.amount_cents == 123450 and first.invoiced and first.product_name
    assert second.amount_cents == 50000 and not second.invoiced
    # Evergreen: a commit's access still ends, one year after the start.
    assert first.access_ending_before == "2027-03-15T00:00:00Z"
    body = contract.request_body(
        "c",
        billing_configuration_id=None,
        product_ids={"Prepaid commit": "p-1", second.product_ref(): "p-2"},
    )
    paid, free = body["commits"]
    assert paid["type"] == "PREPAID" and paid["product_id"] == "p-1"
    assert paid["invoice_schedule"]["schedule_items"] == [
        {"timestamp": "2026-03-15T00:00:00Z", "amount": 123450}
    ]
    assert "invoice_schedule" not in free


@pytest.mark.parametrize(
    ("amount", "currency", "says"),
    [
        (-10, "USD", "is negative"),
        (10.005, "USD", "fractions of a cent"),
        (10, "EUR", "is not USD"),
    ],
)
def test_bad_commit_amounts_fail_the_deal(amount: float, currency: str, says: str) -> None:
    mapping = parse_mapping(COMMITS)
    with pytest.raises(MappingError) as caught:
        contract_of(deal(Prepaid_Commit_Amount__c=amount, CurrencyIsoCode=currency), mapping)
    assert any(says in message for _, message in caught.value.problems)


def test_an_absent_commit_amount_leaves_the_commit_out() -> None:
    mapping = parse_mapping(COMMITS)
    contract = contract_of(deal(Prepaid_Commit_Amount__c=None), mapping)
    assert [c.amount_cents for c in contract.commits] == [50000]


@pytest.mark.parametrize("extra", ["name: {field: Name}", "term_months: {literal: 12}"])
def test_a_package_contract_refuses_what_the_api_refuses(extra: str) -> None:
    text = f"""
name: {{field: Account.Name}}
contract:
  pricing:
    package_alias: {{literal: starter}}
  {extra}
"""
    with pytest.raises(MappingFileError, match="a package contract takes only"):
        parse_mapping(text)


def test_pricing_needs_exactly_one_choice() -> None:
    text = BASE + "    rate_card_id: {literal: x}\n"
    with pytest.raises(MappingFileError, match="exactly one of"):
        parse_mapping(text)


def test_the_contract_fields_join_the_query() -> None:
    fields = DEFAULT.opportunity_fields()
    for name in ("Metronome_Rate_Card__c", "CloseDate", "Contract_Start_Date__c", "Name"):
        assert name in fields


def test_two_deals_of_one_account_in_one_chunk_both_reach_the_sync() -> None:
    first = deal(SystemModstamp="2026-11-20T10:00:00.000+0000")
    second_id = to_18("006Dn00000Secnd")
    second = deal(Id=second_id, SystemModstamp="2026-11-20T11:00:00.000+0000")
    grouped = group_by_account([first, second])
    record = grouped[WIDGETS_ACCOUNT_ID]
    assert record["Id"] == second_id
    assert [r["Id"] for r in record[WON_OPPORTUNITIES_KEY]] == [WIDGETS_OPPORTUNITY_ID]
    assert "Account" not in record[WON_OPPORTUNITIES_KEY][0]
    rows = won_opportunity_rows(record)
    assert [r["Id"] for r in rows] == [second_id, WIDGETS_OPPORTUNITY_ID]
    keys = {contract_of_row(r).uniqueness_key for r in rows}
    assert keys == {uniqueness_key(second_id), uniqueness_key(WIDGETS_OPPORTUNITY_ID)}


def contract_of_row(row: dict[str, Any]) -> Any:
    return DEFAULT.map_contract(row, DEFAULT.map_record(row))


def test_an_account_row_has_no_opportunity_and_gets_no_contract() -> None:
    from mappings import record_from_account

    record = record_from_account(widgets_record()["Account"])
    assert won_opportunity_rows(record) == []
    assert record["Id"] == WIDGETS_ACCOUNT_ID
