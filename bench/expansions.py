"""The expansion part of the contract phase: what a won expansion deal costs once its
account's contract exists, and what it costs when nothing changed.

Each expansion names the deal it expands (the lookup field), so the contract it edits is known
from Redis and the edit is its only call; its line items add a discount and a fee (a seat line
on a product the contract already subscribes to would add one read of the contract, for the
subscription's id).
"""

from __future__ import annotations

from worker.sandbox.metronome.emulator import MetronomeEmulator
from worker.sandbox.salesforce.emulator import SalesforceEmulator

EDIT_ROUTE = "POST /v2/contracts/edit"


def seed_expansions(
    salesforce: SalesforceEmulator,
    metronome: MetronomeEmulator,
    count: int,
    *,
    renewals: bool = False,
) -> int:
    """An expansion deal (with line items) on each of the first ``count`` won deals that
    name a rate card, and with ``renewals`` a renewal deal of each too."""
    catalog = metronome.catalog
    products = {
        kind: salesforce.insert(
            "Product2",
            {
                "Name": name,
                "ProductCode": kind.upper(),
                "IsActive": True,
                "Metronome_Kind__c": kind,
                "Metronome_Product_Id__c": catalog.product_named(name).id,
            },
        )
        for name, kind in (("Compute", "usage"), ("Onboarding fee", "fee"))
    }
    won = [
        row
        for row in (salesforce.get("Opportunity", i) for i in salesforce.ids("Opportunity"))
        if row["StageName"] == "Closed Won" and row.get("Metronome_Rate_Card__c")
    ][:count]
    for row in won:
        deal, account = row["Id"], row["AccountId"]
        if renewals:
            salesforce.insert(
                "Opportunity",
                {
                    "AccountId": account,
                    "Name": "Renewal",
                    "StageName": "Closed Won",
                    "CloseDate": "2026-12-01",
                    "Type": "Renewal",
                    "Metronome_Parent_Opportunity__c": deal,
                    "Metronome_Rate_Card__c": row["Metronome_Rate_Card__c"],
                },
            )
        expansion = salesforce.insert(
            "Opportunity",
            {
                "AccountId": account,
                "Name": "Expansion",
                "StageName": "Closed Won",
                "CloseDate": "2026-11-01",
                "Type": "Expansion",
                "Metronome_Parent_Opportunity__c": deal,
            },
        )
        for kind, fields in (
            ("usage", {"Quantity": 1, "UnitPrice": 0, "Discount": 15}),
            ("fee", {"Quantity": 1, "UnitPrice": 2500}),
        ):
            salesforce.insert(
                "OpportunityLineItem",
                {"OpportunityId": expansion, "Product2Id": products[kind], **fields},
            )
    return len(won)


def edit_calls(by_route: dict[str, int]) -> int:
    return sum(n for key, n in by_route.items() if key.startswith(EDIT_ROUTE))
