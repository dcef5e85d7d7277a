"""Deals closed the way a sales rep closes them (simple-salesforce over the REST API), and what
the Metronome emulator of a running stack made of them.

Integration tests across modules close deals and count customers the same way; one copy keeps
"a won deal" meaning the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

from simple_salesforce.api import Salesforce

from tests.support.stack import held_by
from worker.sandbox.metronome import MetronomeEmulator
from worker.sandbox.stack import SandboxStack


def _account_fields(name: str) -> dict[str, str]:
    """An AWS Marketplace account the default mapping turns into a valid customer."""
    return {
        "Name": name,
        "Billing_Email__c": f"{name.lower().replace(' ', '-')}@example.test",
        "Billing_Provider__c": "aws_marketplace",
        "AWS_Customer_Id__c": "ABC123ABC12",
        "AWS_Product_Code__c": "my_product",
        "AWS_Region__c": "us-west-1",
    }


def new_account(sf: Salesforce, name: str, **account: Any) -> str:
    """Create an account (no deal yet); ``account`` overrides its fields. Its 18-char id."""
    created = sf.Account.create({**_account_fields(name), **account})  # type: ignore[operator]
    account_id: str = sf.Account.get(created["id"])["Id"]  # type: ignore[operator]
    return account_id


def close_deal(sf: Salesforce, name: str, **account: Any) -> str:
    """Create an account and win a deal on it, through the REST API as a rep would."""
    account_id = new_account(sf, name, **account)
    opportunity = sf.Opportunity.create(  # type: ignore[operator]
        {
            "AccountId": account_id,
            "Name": f"{name} deal",
            "StageName": "Negotiation/Review",
            "CloseDate": "2026-11-30",
        }
    )
    sf.Opportunity.update(opportunity["id"], {"StageName": "Closed Won"})  # type: ignore[operator]
    return account_id


def win(sf: Salesforce, account_id: str, name: str, **terms: Any) -> str:
    """Open a deal, then close it won with its contract terms, as a rep would."""
    opportunity = sf.Opportunity.create(  # type: ignore[operator]
        {
            "AccountId": account_id,
            "Name": name,
            "StageName": "Negotiation/Review",
            "CloseDate": "2026-11-30",
        }
    )
    sf.Opportunity.update(  # type: ignore[operator]
        opportunity["id"],
        {"StageName": "Closed Won", "Metronome_Rate_Card__c": "standard", **terms},
    )
    opportunity_id: str = sf.Opportunity.get(opportunity["id"])["Id"]  # type: ignore[operator]
    return opportunity_id


def customers_in(metronome: MetronomeEmulator, account_id: str) -> list[dict[str, Any]]:
    """The emulator's customers linked to this Salesforce account (0, 1, or a bug)."""
    return held_by(metronome.customers(), "sfdc_account_id", account_id)


def customers_of(stack: SandboxStack, account_id: str) -> list[dict[str, Any]]:
    """The stack's Metronome customers linked to this Salesforce account."""
    assert stack.metronome is not None
    return customers_in(stack.metronome, account_id)


def creates(stack: SandboxStack) -> int:
    """How many customer creates Metronome accepted: a duplicate create shows here first."""
    assert stack.metronome is not None
    return sum(
        count
        for key, count in stack.metronome.request_counts().items()
        if key.startswith("POST /v1/customers ") and key.endswith(" 200")
    )
