"""Deterministic, awkward seed data: the accounts a real org accumulates over the years.

Awkward on purpose -- each trait has broken a CRM integration somewhere: names with quotes and
backslashes (SOQL quoting), non-Latin scripts and emoji (encoding, Metronome's 160-character
name limit counted in characters), 255-character names, parent hierarchies several levels deep
(roll-up), every billing provider plus none, and a provider picked with its id fields left
empty (the mapping must report, not crash). Same ``seed`` -> same org, byte for byte.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from worker.sandbox.metronome.catalog import seed_id
from worker.sandbox.salesforce.schema import (
    ACCOUNT,
    BILLING_PROVIDERS,
    OPPORTUNITY,
    OPPORTUNITY_LINE_ITEM,
    PRODUCT2,
)
from worker.sandbox.salesforce.store import RecordStore

_PLAIN = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay"]
_SUFFIX = ["Inc.", "GmbH", "S.A.", "Ltd", "K.K.", "LLC", "AB", "Pty Ltd"]
_AWKWARD = [
    "Müller & Söhne GmbH",
    "株式会社テスト商事",
    "Société Générale d'Électricité",
    'O\'Brien "Quoted" Holdings',
    "Back\\slash Partners",
    "Ωmega Δelta Ltd 🚀",
    "  Leading and trailing spaces  ",
    "Name with %percent_ and _under%score",
    "Iñtërnâtiônàlizætiøn AG",
    "مؤسسة الاختبار",
]
_RATE_CARDS = ("standard", "enterprise", "startup")
#: The org's products, each naming the seeded Metronome product it is billed as and how.
_PRODUCTS = (
    ("SEAT", "Platform seat", "subscription"),
    ("COMMIT", "Prepaid commit", "commit"),
    ("COMPUTE", "Compute", "usage"),
    ("ONBOARD", "Onboarding fee", "fee"),
)
#: Every fifth won deal is sold as line items (seats, a commit, a discount, a fee).
LINE_ITEM_EVERY = 5
_OPEN_STAGES = ["Prospecting", "Qualification", "Negotiation/Review"]


def seed_store(
    store: RecordStore, n_accounts: int, seed: int = 0, won_fraction: float = 1.0
) -> list[str]:
    """Insert ``n_accounts`` accounts with 1-3 opportunities each; return the account ids.

    A ``won_fraction`` of the accounts get a "Closed Won" opportunity; the others only open or
    lost ones, so incremental queries have rows to skip.
    """
    rng = random.Random(seed)  # noqa: S311 -- reproducible faults/data, not security
    products = _seed_products(store)
    account_ids: list[str] = []
    for index in range(n_accounts):
        fields = _account_fields(rng, index)
        if account_ids and rng.random() < 0.25:
            fields["ParentId"] = account_ids[
                rng.randrange(max(0, len(account_ids) - 50), len(account_ids))
            ]
        account_id = store.insert(ACCOUNT.name, fields)
        account_ids.append(account_id)
        won = rng.random() < won_fraction
        for number in range(rng.randint(1, 3)):
            stage = (
                "Closed Won" if won and number == 0 else rng.choice([*_OPEN_STAGES, "Closed Lost"])
            )
            deal = store.insert(
                OPPORTUNITY.name,
                {
                    "AccountId": account_id,
                    "Name": f"{fields['Name'][:60]} - deal {number + 1}",
                    "StageName": stage,
                    "CloseDate": (
                        date(2026, 1, 1) + timedelta(days=rng.randrange(330))
                    ).isoformat(),
                    "Amount": None if rng.random() < 0.1 else round(rng.uniform(1_000, 900_000), 2),
                    # Won deals name a rate card the Metronome emulator knows, so they become
                    # contracts; chosen by index, not by rng, so the rest of the org is
                    # the same as before contracts existed.
                    **(
                        {"Metronome_Rate_Card__c": _RATE_CARDS[index % len(_RATE_CARDS)]}
                        if stage == "Closed Won"
                        else {}
                    ),
                },
            )
            if stage == "Closed Won" and index % LINE_ITEM_EVERY == 0:
                _seed_line_items(store, deal, products, index)
    return account_ids


def _seed_products(store: RecordStore) -> dict[str, str]:
    return {
        code: store.insert(
            PRODUCT2.name,
            {
                "Name": name,
                "ProductCode": code,
                "Family": "Platform",
                "IsActive": True,
                "Metronome_Kind__c": kind,
                "Metronome_Product_Id__c": seed_id("product", name),
            },
        )
        for code, name, kind in _PRODUCTS
    }


def _seed_line_items(store: RecordStore, deal: str, products: dict[str, str], index: int) -> None:
    """A deal as sold: seats, a prepaid commit, a discount on compute, an onboarding fee
    (amounts by ``index``, not by the rng, so the rest of the org is as before)."""
    lines = (
        ("SEAT", 10 + index % 90, 1200.0, None),
        ("COMMIT", 1, 12_000.0 * (1 + index % 10), None),
        ("COMPUTE", 1, 0.0, float(5 * (1 + index % 6))),
        ("ONBOARD", 1, 2_500.0, None),
    )
    for order, (code, quantity, price, discount) in enumerate(lines):
        store.insert(
            OPPORTUNITY_LINE_ITEM.name,
            {
                "OpportunityId": deal,
                "Product2Id": products[code],
                "Quantity": quantity,
                "UnitPrice": price,
                "Discount": discount,
                "SortOrder": order,
            },
        )


def _account_fields(rng: random.Random, index: int) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.2:
        name = rng.choice(_AWKWARD)
    elif roll < 0.25:
        name = ("Very Long Name Corporation " * 12)[:255]
    else:
        name = f"{rng.choice(_PLAIN)} {index} {rng.choice(_SUFFIX)}"
    fields: dict[str, Any] = {"Name": name}
    if rng.random() < 0.7:
        fields["Website"] = f"https://www.example-{index}.com"
    if rng.random() < 0.85:
        fields["Billing_Email__c"] = f"billing+{index}@example.com"
    provider = rng.choice([*BILLING_PROVIDERS, None])
    fields["Billing_Provider__c"] = provider
    complete = rng.random() < 0.9  # one in ten picks a provider but leaves its ids empty
    if complete:
        fields.update(_provider_fields(rng, provider, index))
    return fields


def _provider_fields(rng: random.Random, provider: str | None, index: int) -> dict[str, Any]:
    if provider == "aws_marketplace":
        return {
            "AWS_Customer_Id__c": f"aws-cust-{index:08d}",
            "AWS_Product_Code__c": rng.choice(["prodcode-a1", "prodcode-b2"]),
            "AWS_Region__c": rng.choice(["us-east-1", "eu-west-1", "ap-northeast-1"]),
        }
    if provider == "azure_marketplace":
        return {"Azure_Subscription_Id__c": f"{index:08x}-0000-4000-8000-{index:012x}"}
    if provider == "gcp_marketplace":
        return {
            "GCP_Entitlement_Id__c": f"gcp-ent-{index}",
            "GCP_Service_Name__c": "crmsync.endpoints.example.cloud.goog",
        }
    if provider == "stripe":
        return {
            "Stripe_Customer_Id__c": f"cus_{index:014d}",
            "Stripe_Collection_Method__c": rng.choice(["charge_automatically", "send_invoice"]),
        }
    if provider == "netsuite":
        return {"NetSuite_Customer_Id__c": str(100_000 + index)}
    return {}
