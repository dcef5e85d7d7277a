"""A deal as sold: its line items become contract terms (subscriptions, commits, recurring
commits, overrides, fees), an expansion becomes an edit, a renewal a transition -- pure."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from mappings import MappingError, MappingFileError, parse_mapping
from mappings.contracts.edits import map_expansion
from mappings.contracts.engine import map_contract
from mappings.contracts.model import ContractRule
from mappings.ids import to_18
from tests.support.mapping_records import WIDGETS_ACCOUNT_ID, widgets_record

SEAT = "7c2f4f57-7f59-5e39-9d6c-3b0c9b3a2d11"
COMPUTE = "0d8f0c8e-6b0b-5d7e-9a1d-2f6b5c4e3a21"
COMMIT = "5a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c41"
FEE = "6b2c3d4e-5f6a-5b7c-8d9e-0f1a2b3c4d51"
EUR = "6d3f3a2e-0c51-5d8e-a3b4-1f0e6c2d9a71"
PARENT = to_18("006Dn00000PrntA")

MAPPING = """
name: {field: Account.Name}
contract:
  pricing:
    rate_card_alias: {literal: standard}
  starting_at: {default: [{field: Contract_Start_Date__c}, {field: CloseDate}]}
  term_months: {field: Contract_Term_Months__c}
  deal_kind: {}
  currency:
    credit_types: {EUR: EUR_ID}
  line_items:
    product_codes: {ONBOARD: FEE_ID}
    rules:
      - when: {equals: {field: Product2.Metronome_Kind__c, value: subscription}}
        subscription: {billing_frequency: {literal: ANNUAL}}
      - when: {equals: {field: Product2.Metronome_Kind__c, value: commit}}
        commit: {invoicing: instalments, instalments: 4}
      - when: {equals: {field: Product2.Metronome_Kind__c, value: usage}}
        override: {discount: {field: Discount}}
      - when: {equals: {field: Product2.Metronome_Kind__c, value: fee}}
        scheduled_charge: {}
""".replace("EUR_ID", EUR).replace("FEE_ID", FEE)


def rule(text: str = MAPPING) -> ContractRule:
    contract = parse_mapping(text).contract
    assert contract is not None
    return contract


def item(n: int, kind: str, product: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "Id": to_18(f"00kDn0000000{n:03d}"),
        "Quantity": 1.0,
        "UnitPrice": 0.0,
        "TotalPrice": 0.0,
        "Discount": None,
        "Product2": {
            "Name": kind.title(),
            "ProductCode": "ONBOARD" if kind == "fee" else kind.upper(),
            "Metronome_Kind__c": kind,
            "Metronome_Product_Id__c": product,
        },
        **fields,
    }


def deal(*items: dict[str, Any], **fields: Any) -> dict[str, Any]:
    record = widgets_record()
    record.update(
        {
            "CloseDate": "2026-03-15",
            "Contract_Term_Months__c": 12.0,
            "Type": "New Customer",
            "OpportunityLineItems": (
                {"totalSize": len(items), "done": True, "records": list(items)} if items else None
            ),
            **fields,
        }
    )
    return record


SOLD = deal(
    item(1, "subscription", SEAT, Quantity=50.0, UnitPrice=1200.0, TotalPrice=60000.0),
    item(2, "commit", COMMIT, TotalPrice=120000.0),
    item(3, "usage", COMPUTE, Discount=20.0),
    item(4, "fee", None, TotalPrice=5000.0),
)


def test_line_items_become_the_contract_terms() -> None:
    contract = map_contract(rule(), SOLD, WIDGETS_ACCOUNT_ID)
    assert contract is not None
    body = contract.request_body("c-1", billing_configuration_id=None, product_ids={})
    assert body["subscriptions"] == [
        {
            "subscription_rate": {"product_id": SEAT, "billing_frequency": "ANNUAL"},
            "initial_quantity": 50,
            "collection_schedule": "ADVANCE",
            "proration": {"is_prorated": True, "invoice_behavior": "BILL_IMMEDIATELY"},
        }
    ]
    [commit] = body["commits"]
    assert commit["access_schedule"]["schedule_items"] == [
        {"amount": 12_000_000, "starting_at": "2026-03-15T00:00:00Z",
         "ending_before": "2027-03-15T00:00:00Z"}
    ]  # fmt: skip
    assert commit["invoice_schedule"]["schedule_items"] == [
        {"timestamp": f"{day}T00:00:00Z", "amount": 3_000_000}
        for day in ("2026-03-15", "2026-06-15", "2026-09-15", "2026-12-15")
    ]
    assert body["overrides"] == [
        {"product_id": COMPUTE, "starting_at": "2026-03-15T00:00:00Z",
         "ending_before": "2027-03-15T00:00:00Z", "type": "MULTIPLIER", "multiplier": 0.8}
    ]  # fmt: skip
    assert body["scheduled_charges"] == [
        {"product_id": FEE, "name": "Fee", "schedule": {
            "schedule_items": [{"timestamp": "2026-03-15T00:00:00Z", "amount": 500_000}]}}
    ]  # fmt: skip
    assert "credit_type_id" not in str(body)  # USD cents is the default: named nowhere


def test_a_deal_without_line_items_keeps_its_old_hash() -> None:
    """Lifecycle fields at their defaults stay out of the dedupe form: contracts made before
    line items existed are not reported as changed."""
    contract = map_contract(rule(), deal(), WIDGETS_ACCOUNT_ID)
    assert contract is not None
    assert not {"line_terms", "kind", "credit_type_id"} & set(contract.canonical())


def test_amounts_follow_the_deals_currency() -> None:
    contract = map_contract(rule(), deal(*SOLD["OpportunityLineItems"]["records"],
                                         CurrencyIsoCode="EUR"), WIDGETS_ACCOUNT_ID)  # fmt: skip
    assert contract is not None
    body = contract.request_body("c-1", billing_configuration_id=None, product_ids={})
    assert body["commits"][0]["access_schedule"]["credit_type_id"] == EUR
    assert body["scheduled_charges"][0]["schedule"]["credit_type_id"] == EUR
    with pytest.raises(MappingError, match="'JPY' has no Metronome credit type"):
        map_contract(rule(), deal(CurrencyIsoCode="JPY"), WIDGETS_ACCOUNT_ID)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (item(7, "subscription", None, Quantity=5.0), "names no Metronome product (from Product2"),
        (item(7, "commit", COMMIT, TotalPrice=10.005), "fractions of a cent"),
        (item(7, "usage", COMPUTE, Discount=120.0), "more than 100"),
        (item(7, "commit", COMMIT, TotalPrice=-1.0), "negative"),
        (item(7, "mystery", SEAT), "no line item rule matches it"),
    ],
)
def test_a_line_item_that_cannot_be_mapped_names_itself_and_its_field(
    line: dict[str, Any], words: str
) -> None:
    with pytest.raises(MappingError) as caught:
        map_contract(rule(), deal(line), WIDGETS_ACCOUNT_ID)
    assert words in str(caught.value)
    assert f"line_items[0] {line['Id']}" in str(caught.value)


def test_a_partly_read_child_set_is_refused() -> None:
    record = deal(item(1, "subscription", SEAT))
    record["OpportunityLineItems"]["done"] = False
    with pytest.raises(MappingError, match="nextRecordsUrl"):
        map_contract(rule(), record, WIDGETS_ACCOUNT_ID)


def test_rules_the_api_would_refuse_fail_at_load() -> None:
    for bad, words in (
        ("commit: {type: POSTPAID, invoicing: complimentary}", "POSTPAID"),
        ("override: {discount: {field: Discount}, unit_price: {field: UnitPrice}}", "exactly one"),
        ("", "exactly one of: subscription"),
    ):
        text = MAPPING.replace("scheduled_charge: {}", bad)
        with pytest.raises(MappingFileError, match=words):
            parse_mapping(text)


def test_an_expansion_is_an_edit_with_a_seat_update() -> None:
    expansion = deal(
        item(1, "subscription", SEAT, Quantity=20.0),
        item(2, "usage", COMPUTE, Discount=30.0),
        Type="Existing Customer - Upgrade",
        Metronome_Parent_Opportunity__c=PARENT[:15],
        Contract_Start_Date__c="2026-09-01",
    )
    assert map_contract(rule(), expansion, WIDGETS_ACCOUNT_ID) is None  # not a contract
    edit = map_expansion(rule(), expansion, WIDGETS_ACCOUNT_ID, contract_end=date(2027, 3, 15))
    assert edit is not None and edit.parent_opportunity_id == PARENT
    assert edit.uniqueness_key.endswith(expansion["Id"])
    body = edit.request_body("c-1", "k-1", {(SEAT, "ANNUAL"): "sub-1"})
    assert body["update_subscriptions"] == [
        {"subscription_id": "sub-1",
         "quantity_updates": [{"starting_at": "2026-09-01T00:00:00Z", "quantity_delta": 20}]}
    ]  # fmt: skip
    assert "add_subscriptions" not in body
    assert body["add_overrides"][0]["multiplier"] == 0.7
    assert body["add_overrides"][0]["ending_before"] == "2027-03-15T00:00:00Z"
    fresh = edit.request_body("c-1", "k-1", {})
    assert fresh["add_subscriptions"][0]["starting_at"] == "2026-09-01T00:00:00Z"


def test_a_renewal_follows_the_renewed_contract_unless_it_names_a_start() -> None:
    renewal = deal(Type="Renewal", Metronome_Parent_Opportunity__c=PARENT)
    contract = map_contract(rule(), renewal, WIDGETS_ACCOUNT_ID)
    assert contract is not None and contract.kind == "renewal" and contract.follows_renewed
    moved = map_contract(
        rule(), renewal, WIDGETS_ACCOUNT_ID, starting_at_override=date(2027, 3, 15)
    )
    assert moved is not None and moved.starting_at == "2027-03-15T00:00:00Z"
    assert moved.ending_before == "2028-03-15T00:00:00Z"
    body = moved.request_body("c-1", billing_configuration_id=None, product_ids={},
                              renews_contract_id="old")  # fmt: skip
    assert body["transition"] == {"type": "RENEWAL", "from_contract_id": "old"}
    named = deal(Type="Renewal", Contract_Start_Date__c="2027-04-01")
    assert not map_contract(rule(), named, WIDGETS_ACCOUNT_ID).follows_renewed  # type: ignore[union-attr]


def test_the_billing_configuration_by_provider_needs_no_read() -> None:
    contract = map_contract(rule(), deal(), WIDGETS_ACCOUNT_ID)
    assert contract is not None
    object.__setattr__(contract, "billing_provider", "stripe")
    body = contract.request_body("c", billing_configuration_id=None, product_ids={},
                                 billing_by_provider=True)  # fmt: skip
    assert body["billing_provider_configuration"] == {
        "billing_provider": "stripe",
        "delivery_method": "direct_to_billing_provider",
    }
