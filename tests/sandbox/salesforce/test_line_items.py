"""Line items in the emulated org, through simple-salesforce over HTTP: ``Product2`` and
``OpportunityLineItem`` are creatable, ``TotalPrice`` is Quantity x UnitPrice less Discount %,
a line item's write moves its opportunity's stamp (so the poll sees it), and a
parent-to-child subquery answers as Salesforce does: nested ``{totalSize, done, records}``
per row, ``null`` without children, child paging through its own ``nextRecordsUrl``."""

from __future__ import annotations

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql

from tests.support.line_items import deal, line, product
from tests.support.salesforce_emulator import sobject
from worker.sandbox.salesforce import SalesforceEmulator
from worker.sandbox.salesforce.app import CHILD_BATCH

QUERY = (
    "SELECT Id, Name, (SELECT Id, Quantity, UnitPrice, TotalPrice, Discount, SortOrder, "
    "Product2.ProductCode, Product2.Metronome_Kind__c FROM OpportunityLineItems "
    "ORDER BY SortOrder) FROM Opportunity WHERE Id IN {} ORDER BY Name"
)


def test_line_items_nest_under_their_opportunity_in_sort_order(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    with_items, without = deal(sf, "A with items"), deal(sf, "B without")
    seats, compute = product(sf, "SEAT"), product(sf, "COMPUTE", "usage")
    line(sf, with_items, compute, SortOrder=2, Quantity=1, UnitPrice=0, Discount=20)
    line(sf, with_items, seats, SortOrder=1, Quantity=50, UnitPrice=1200, Discount=10)
    answer = sf.query(format_soql(QUERY, [with_items, without]))
    first, second = answer["records"]
    assert second["OpportunityLineItems"] is None
    nested = first["OpportunityLineItems"]
    assert (nested["totalSize"], nested["done"]) == (2, True)
    assert "nextRecordsUrl" not in nested
    seat_line = nested["records"][0]
    assert seat_line["Product2"]["ProductCode"] == "SEAT"
    assert seat_line["attributes"]["type"] == "OpportunityLineItem"
    assert seat_line["TotalPrice"] == 54000.0  # 50 x 1,200 less 10 %
    assert [r["SortOrder"] for r in nested["records"]] == [1.0, 2.0]


def test_a_large_child_set_pages_through_its_own_next_records_url(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    opportunity = deal(sf, "Many lines")
    seats = product(sf, "SEAT")
    for n in range(CHILD_BATCH + 7):
        line(sf, opportunity, seats, SortOrder=n)
    nested = sf.query(format_soql(QUERY, [opportunity]))["records"][0]["OpportunityLineItems"]
    assert (nested["totalSize"], nested["done"]) == (CHILD_BATCH + 7, False)
    assert len(nested["records"]) == CHILD_BATCH
    rest = sf.query_more(nested["nextRecordsUrl"], identifier_is_url=True)
    assert rest["done"] and len(rest["records"]) == 7
    orders = [r["SortOrder"] for r in nested["records"] + rest["records"]]
    assert orders == sorted(orders) and len(set(orders)) == CHILD_BATCH + 7


def test_a_line_item_write_moves_the_opportunity_and_its_amount(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    opportunity = deal(sf, "Rolled up")
    before = sobject(sf, "Opportunity").get(opportunity)["SystemModstamp"]
    item = line(sf, opportunity, product(sf, "FEE", "fee"), Quantity=2, UnitPrice=2500)
    after = sobject(sf, "Opportunity").get(opportunity)
    assert after["SystemModstamp"] > before and after["Amount"] == 5000.0
    sobject(sf, "OpportunityLineItem").update(item, {"Discount": 50})
    assert sobject(sf, "Opportunity").get(opportunity)["Amount"] == 2500.0


def test_line_item_write_rules(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    opportunity, seats = deal(sf, "Rules"), product(sf, "SEAT")
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_FIELD_FOR_INSERT_UPDATE"):
        line(sf, opportunity, seats, TotalPrice=1)
    with pytest.raises(SalesforceMalformedRequest, match="REQUIRED_FIELD_MISSING"):
        sobject(sf, "OpportunityLineItem").create({"OpportunityId": opportunity, "Quantity": 1})
    with pytest.raises(SalesforceMalformedRequest, match="FIELD_INTEGRITY_EXCEPTION"):
        line(sf, opportunity, seats, Discount=120)
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_TYPE"):
        sf.query("SELECT Id, (SELECT Id FROM NoSuchChildren) FROM Opportunity")
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_FIELD"):
        sf.query("SELECT Id, (SELECT Nope__c FROM OpportunityLineItems) FROM Opportunity")


def test_an_expansion_names_the_deal_it_expands(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    original = deal(sf, "Original")
    expansion = deal(sf, "Expansion")
    sobject(sf, "Opportunity").update(
        expansion,
        {"Type": "Existing Customer - Upgrade", "Metronome_Parent_Opportunity__c": original},
    )
    [row] = sf.query(
        format_soql(
            "SELECT Type, Metronome_Parent_Opportunity__r.Name FROM Opportunity WHERE Id = {}",
            expansion,
        )
    )["records"]
    assert row["Type"] == "Existing Customer - Upgrade"
    assert row["Metronome_Parent_Opportunity__r"]["Name"] == "Original"
