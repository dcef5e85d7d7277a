"""Deals, products and line items made through simple-salesforce, as a sales rep's tool makes
them: for the emulator's and the source's line-item tests."""

from __future__ import annotations

from typing import Any

from simple_salesforce.api import Salesforce

from tests.support.salesforce_emulator import sobject


def deal(sf: Salesforce, name: str) -> str:
    account = sobject(sf, "Account").create({"Name": f"{name} Inc"})["id"]
    return str(
        sobject(sf, "Opportunity").create(
            {"AccountId": account, "Name": name, "StageName": "Prospecting",
             "CloseDate": "2026-12-01", "Type": "New Customer"}
        )["id"]
    )  # fmt: skip


def product(sf: Salesforce, code: str, kind: str = "subscription") -> str:
    return str(
        sobject(sf, "Product2").create(
            {"Name": code.title(), "ProductCode": code, "Family": "Platform", "IsActive": True,
             "Metronome_Kind__c": kind}
        )["id"]
    )  # fmt: skip


def line(sf: Salesforce, opportunity: str, product_id: str, **fields: Any) -> str:
    body = {"OpportunityId": opportunity, "Product2Id": product_id, "Quantity": 1,
            "UnitPrice": 100, **fields}  # fmt: skip
    return str(sobject(sf, "OpportunityLineItem").create(body)["id"])
