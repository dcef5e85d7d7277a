"""The one account the bad-answer and lock-lease tests sync, with its Metronome token.

Both drive ``run_sync`` for this account against an emulator of their own; sharing it keeps
their records identical (a Stripe account, no parent).
"""

from __future__ import annotations

from typing import Any

TOKEN = "bad-answers-token"
ACCOUNT = "001000000000009AAA"


def record() -> dict[str, Any]:
    """The Salesforce source's record of ACCOUNT's won deal."""
    return {
        "Id": "006000000000009AAA",
        "AccountId": ACCOUNT,
        "SystemModstamp": "2026-11-20T10:00:00.000+0000",
        "Account": {
            "Id": ACCOUNT,
            "Name": "Spoiled Answers Ltd",
            "Billing_Email__c": "ops@spoiled.example",
            "Billing_Provider__c": "stripe",
            "Stripe_Customer_Id__c": "cus_spoiled0001",
            "Stripe_Collection_Method__c": "send_invoice",
            "Parent": None,
        },
    }
