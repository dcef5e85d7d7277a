"""The expansion part of the contract phase: what a won expansion deal costs once its
account's contract exists, and what it costs when nothing changed.

Each expansion names the deal it expands (the lookup field), so the contract it edits is known
from Redis. Two kinds, measured apart:

- **discount and fee**: the line items add an override and a scheduled charge (``add_*``
  terms): the edit is the only call;
- **seats**: a seat line on the product and frequency the expanded contract already
  subscribes to (its deal sold seats: :func:`seed_parent_seats`, before the contracts are
  made) is a quantity update of that subscription, by an id crmsync learnt from the create's
  answer: the edit is the only call here too (one read of the contract when the id is not
  known, e.g. after a FLUSHALL).
"""

from __future__ import annotations

from typing import Any

from worker.sandbox.metronome.emulator import MetronomeEmulator
from worker.sandbox.salesforce.emulator import SalesforceEmulator

EDIT_ROUTE = "POST /v2/contracts/edit"
GET_ROUTE = "POST /v2/contracts/get"
#: Salesforce products of the bench's deals: (Metronome product name, kind).
PRODUCTS = (
    ("Compute", "usage"),
    ("Onboarding fee", "fee"),
    ("Platform seat", "subscription"),
)
#: What the deals of each kind sell: (product kind, line item fields).
DISCOUNT_AND_FEE = (
    ("usage", {"Quantity": 1, "UnitPrice": 0, "Discount": 15}),
    ("fee", {"Quantity": 1, "UnitPrice": 2500}),
)
PARENT_SEATS = (("subscription", {"Quantity": 50, "UnitPrice": 1200}),)
MORE_SEATS = (("subscription", {"Quantity": 5, "UnitPrice": 1200}),)


def seed_products(salesforce: SalesforceEmulator, metronome: MetronomeEmulator) -> dict[str, str]:
    """The Salesforce products the bench's line items name, by kind."""
    catalog = metronome.catalog
    return {
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
        for name, kind in PRODUCTS
    }


def won_deals(salesforce: SalesforceEmulator) -> list[dict[str, Any]]:
    """The won deals that name a rate card (each makes a contract), in insertion order."""
    return [
        row
        for row in (salesforce.get("Opportunity", i) for i in salesforce.ids("Opportunity"))
        if row["StageName"] == "Closed Won" and row.get("Metronome_Rate_Card__c")
    ]


def seed_parent_seats(
    salesforce: SalesforceEmulator, products: dict[str, str], deals: list[dict[str, Any]]
) -> None:
    """Seats sold on ``deals`` (before their contracts are made): each contract subscribes."""
    for row in deals:
        _lines(salesforce, products, row["Id"], PARENT_SEATS)


def seed_expansions(
    salesforce: SalesforceEmulator,
    metronome: MetronomeEmulator,
    count: int,
    *,
    renewals: bool = False,
    deals: list[dict[str, Any]] | None = None,
    seats: bool = False,
    products: dict[str, str] | None = None,
) -> int:
    """An expansion deal (with line items) on each of the first ``count`` won deals that
    name a rate card (or of ``deals``), and with ``renewals`` a renewal deal of each too.
    ``seats``: the expansion adds seats (the deals must have sold some); else a discount
    and a fee."""
    products = products or seed_products(salesforce, metronome)
    chosen = (deals if deals is not None else won_deals(salesforce))[:count]
    for row in chosen:
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
                "Name": "Seat expansion" if seats else "Expansion",
                "StageName": "Closed Won",
                "CloseDate": "2026-11-01",
                "Type": "Expansion",
                "Metronome_Parent_Opportunity__c": deal,
            },
        )
        _lines(salesforce, products, expansion, MORE_SEATS if seats else DISCOUNT_AND_FEE)
    return len(chosen)


def _lines(
    salesforce: SalesforceEmulator,
    products: dict[str, str],
    opportunity: str,
    lines: tuple[tuple[str, dict[str, Any]], ...],
) -> None:
    for kind, fields in lines:
        salesforce.insert(
            "OpportunityLineItem",
            {"OpportunityId": opportunity, "Product2Id": products[kind], **fields},
        )


def route_calls(by_route: dict[str, int], route: str) -> int:
    return sum(n for key, n in by_route.items() if key.startswith(route))


def edit_calls(by_route: dict[str, int]) -> int:
    return route_calls(by_route, EDIT_ROUTE)
