"""The poll reads each deal with its line items in one query (a parent-to-child subquery)
and completes a child set larger than one answer through its own ``nextRecordsUrl``."""

from __future__ import annotations

from simple_salesforce.api import Salesforce

from tests.support.line_items import deal, line, product
from tests.support.salesforce_emulator import sobject
from worker.salesforce.source import ClosedWonSource
from worker.sandbox.salesforce import SalesforceEmulator
from worker.sandbox.salesforce.app import CHILD_BATCH


def test_the_source_reads_every_line_item_in_the_deal_query(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    """One query per page of deals however many line items they have; a deal whose line
    items overflow the nested answer is completed through the child's nextRecordsUrl."""
    big, small = deal(sf, "Big"), deal(sf, "Small")
    seats = product(sf, "SEAT")
    for n in range(CHILD_BATCH + 3):
        line(sf, big, seats, SortOrder=n)
    line(sf, small, seats, Quantity=7)
    for opportunity in (big, small):
        sobject(sf, "Opportunity").update(opportunity, {"StageName": "Closed Won"})
    source = ClosedWonSource(sf, ["Name"], line_item_fields=["Quantity", "Product2.ProductCode"])
    assert "(SELECT Quantity, Product2.ProductCode FROM OpportunityLineItems" in source.fields
    emulator.reset()
    rows = {r["Name"]: r for r in source.all_records()}
    assert len(rows["Big"]["OpportunityLineItems"]["records"]) == CHILD_BATCH + 3
    assert rows["Big"]["OpportunityLineItems"]["done"] is True
    assert rows["Small"]["OpportunityLineItems"]["records"] == [
        {"Quantity": 7.0, "Product2": {"ProductCode": "SEAT"}}
    ]
    assert emulator.request_counts() == {"query 200": 1, "query_more 200": 1}
