"""A sales rep's edits in the sandbox org: add an account, win, re-open, rename.

``crmsync sandbox add-account|close|reopen|rename`` call these so a newcomer can watch a sync
happen without writing code. They go through the emulator's real REST API with
simple-salesforce (sObject create/update and SOQL), exactly as a rep's tool would, so what
crmsync sees next is what it would see from a real org: a new ``SystemModstamp``, ``IsWon``
derived from the stage.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simple_salesforce.api import Salesforce
from simple_salesforce.format import format_soql

from mappings.ids import normalize_salesforce_id
from worker.sandbox.billing import provider_fields

#: The stages the emulator knows (worker/sandbox/salesforce/schema.py); IsWon follows them.
OPEN_STAGE = "Prospecting"
WON_STAGE = "Closed Won"
REOPENED_STAGE = "Negotiation/Review"

PROVIDERS = (
    "aws_marketplace",
    "azure_marketplace",
    "gcp_marketplace",
    "stripe",
    "netsuite",
    "none",
)

_unique = itertools.count(int(time.time()) % 1_000_000)

#: Salesforce's limits: Account.Name holds 255 characters, Opportunity.Name 120. The deal is
#: named after the account, shortened to fit.
ACCOUNT_NAME_MAX = 255
DEAL_NAME_MAX = 120


class SandboxEditError(ValueError):
    """The edit cannot be made (no such account, no deal in the right stage)."""


@dataclass(frozen=True)
class Edit:
    account_id: str
    opportunity_id: str | None
    what: str


def add_account(
    sf: Salesforce,
    name: str,
    *,
    provider: str = "aws_marketplace",
    email: str | None = None,
    rate_card: str | None = None,
    term_months: int | None = None,
) -> Edit:
    """An Account whose fields the default mapping needs, with one open deal on it; with a
    ``rate_card`` (a Metronome rate card alias) the deal, once won, also makes a contract.

    Everything is checked before anything is created: a refused name leaves no Account
    without its deal behind."""
    name = name.strip()
    if not name or len(name) > ACCOUNT_NAME_MAX:
        raise SandboxEditError(
            f"an account name must have 1 to {ACCOUNT_NAME_MAX} characters (Salesforce's limit "
            f"for Account.Name); this one has {len(name)}"
        )
    if term_months is not None and not 1 <= term_months <= 120:
        raise SandboxEditError("--term-months must be between 1 and 120")
    number = next(_unique)
    fields: dict[str, Any] = {
        "Name": name,
        "Billing_Email__c": email or f"billing+{number}@example.test",
        **(provider_fields(provider, number, "sandbox") if provider != "none" else {}),
    }
    account = sf.Account.create(fields)  # type: ignore[operator]
    close_date = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    deal: dict[str, Any] = {
        "AccountId": account["id"],
        "Name": f"{name[: DEAL_NAME_MAX - len(' deal')].rstrip()} deal",
        "StageName": OPEN_STAGE,
        "CloseDate": close_date,
    }
    if rate_card:
        deal["Metronome_Rate_Card__c"] = rate_card
    if term_months is not None:
        deal["Contract_Term_Months__c"] = term_months
    opportunity = sf.Opportunity.create(deal)  # type: ignore[operator]
    account_id = normalize_salesforce_id(account["id"])
    terms = f", rate card {rate_card!r}" if rate_card else ""
    return Edit(account_id, opportunity["id"], f"created with an open deal ({OPEN_STAGE}{terms})")


def close(sf: Salesforce, account_id: str) -> Edit:
    """Win the account's newest open deal (Closed Won: IsWon becomes true)."""
    return _move(sf, account_id, won=False, stage=WON_STAGE)


def reopen(sf: Salesforce, account_id: str) -> Edit:
    """Move the account's newest won deal back to an open stage (crmsync records it as
    "needs attention" and archives nothing)."""
    return _move(sf, account_id, won=True, stage=REOPENED_STAGE)


def rename(sf: Salesforce, account_id: str, name: str) -> Edit:
    account = normalize_salesforce_id(account_id)
    _require_account(sf, account)
    sf.Account.update(account, {"Name": name})  # type: ignore[operator]
    return Edit(account, None, f"renamed to {name!r}")


def _move(sf: Salesforce, account_id: str, *, won: bool, stage: str) -> Edit:
    account = normalize_salesforce_id(account_id)
    _require_account(sf, account)
    soql = format_soql(
        "SELECT Id FROM Opportunity WHERE AccountId = {} AND IsWon = {} AND IsClosed = {} "
        "ORDER BY CreatedDate DESC LIMIT 1",
        account,
        won,
        won,
    )
    records = sf.query(soql)["records"]
    if not records:
        state = "won" if won else "open"
        raise SandboxEditError(f"account {account} has no {state} deal to move to {stage!r}")
    opportunity_id = str(records[0]["Id"])
    sf.Opportunity.update(opportunity_id, {"StageName": stage})  # type: ignore[operator]
    return Edit(account, opportunity_id, f"deal moved to {stage!r}")


def _require_account(sf: Salesforce, account_id: str) -> None:
    soql = format_soql("SELECT Id FROM Account WHERE Id = {}", account_id)
    if not sf.query(soql)["records"]:
        raise SandboxEditError(f"no account {account_id} in the sandbox org")
