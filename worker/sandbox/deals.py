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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql

from mappings.ids import normalize_salesforce_id
from worker.salesforce.trouble import error_code
from worker.sandbox.billing import provider_fields
from worker.sandbox.line_items import (
    LineItem,
    LineItemSpec,
    Product,
    catalogue_of,
    resolve,
)

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
    line_items: Sequence[LineItemSpec] = (),
    won: bool = False,
) -> Edit:
    """An Account whose fields the default mapping needs, with one deal on it (open, or won
    with ``won``); with a ``rate_card`` (a Metronome rate card alias) the won deal also makes
    a contract, whose terms are the deal's ``line_items``.

    Everything is checked before anything is created (the name, the term, each line item
    against the org's products), and the records are made all or nothing: when Salesforce
    refuses one, the account made before it is deleted again (its deal and line items go
    with it), or the error says exactly what is left. The deal is won last, so no sync ever
    sees half a deal."""
    name = name.strip()
    if not name or len(name) > ACCOUNT_NAME_MAX:
        raise SandboxEditError(
            f"an account name must have 1 to {ACCOUNT_NAME_MAX} characters (Salesforce's limit "
            f"for Account.Name); this one has {len(name)}"
        )
    if term_months is not None and not 1 <= term_months <= 120:
        raise SandboxEditError("--term-months must be between 1 and 120")
    if line_items and not rate_card:
        raise SandboxEditError(
            "line items become contract terms only on a deal with a rate card: add "
            "--rate-card standard (or enterprise, startup)"
        )
    items = resolve(line_items, read_catalogue(sf)) if line_items else []
    number = next(_unique)
    fields: dict[str, Any] = {
        "Name": name,
        "Billing_Email__c": email or f"billing+{number}@example.test",
        **(provider_fields(provider, number, "sandbox") if provider != "none" else {}),
    }
    deal: dict[str, Any] = {
        "Name": f"{name[: DEAL_NAME_MAX - len(' deal')].rstrip()} deal",
        "StageName": OPEN_STAGE,
        "CloseDate": (datetime.now(UTC) + timedelta(days=30)).date().isoformat(),
    }
    if rate_card:
        deal["Metronome_Rate_Card__c"] = rate_card
    if term_months is not None:
        deal["Contract_Term_Months__c"] = term_months
    made = _create(sf, fields, deal, items, won=won)
    stage = WON_STAGE if won else OPEN_STAGE
    terms = f", rate card {rate_card!r}" if rate_card else ""
    what = (
        f"created with {'a won' if won else 'an open'} deal {made.opportunity_id} ({stage}{terms})"
    )
    if items:
        what += ", sold as:" + "".join(f"\n  {item.describe()}" for item in items)
    return Edit(made.account_id, made.opportunity_id, what)


def read_catalogue(sf: Salesforce) -> list[Product]:
    """The org's active products, with what the default mapping reads of them."""
    soql = "SELECT Id, ProductCode, Name, Metronome_Kind__c FROM Product2 WHERE IsActive = true"
    return catalogue_of(sf.query_all(soql)["records"])


@dataclass
class _Made:
    """What :func:`_create` made so far, to undo or to report."""

    account_id: str = ""
    opportunity_id: str = ""
    lines: int = 0
    step: str = "the account"


def _create(
    sf: Salesforce,
    account: dict[str, Any],
    deal: dict[str, Any],
    items: Sequence[LineItem],
    *,
    won: bool,
) -> _Made:
    """The account, its deal, the deal's line items, then (``won``) the win: all or nothing."""
    made = _Made()
    try:
        made.account_id = normalize_salesforce_id(sf.Account.create(account)["id"])  # type: ignore[operator]
        made.step = "the deal"
        opportunity = sf.Opportunity.create({**deal, "AccountId": made.account_id})  # type: ignore[operator]
        made.opportunity_id = str(opportunity["id"])
        for order, item in enumerate(items):
            made.step = f"the line item {item.spec.text!r}"
            sf.OpportunityLineItem.create(item.fields(made.opportunity_id, order))  # type: ignore[operator]
            made.lines += 1
        if won:
            made.step = f"moving the deal to {WON_STAGE!r}"
            sf.Opportunity.update(made.opportunity_id, {"StageName": WON_STAGE})  # type: ignore[operator]
    except (SalesforceError, requests.RequestException) as exc:
        if not made.account_id and isinstance(exc, requests.RequestException):
            raise  # nothing was made: the sandbox did not answer
        raise _undone(sf, made, len(items), exc) from exc
    return made


def _undone(sf: Salesforce, made: _Made, planned_lines: int, exc: Exception) -> SandboxEditError:
    """The error for a creation that failed at ``made.step``, after deleting what it made
    (deleting the account deletes its deal and line items, as in Salesforce)."""
    failed = f"{made.step} failed ({_why(exc)})"
    if not made.account_id:
        return SandboxEditError(f"{failed}; nothing was created")
    try:
        sf.Account.delete(made.account_id)  # type: ignore[operator]
    except (SalesforceError, requests.RequestException) as undo:
        deal = (
            f", its open deal {made.opportunity_id} with {made.lines} of {planned_lines} line items"
            if made.opportunity_id
            else " without its deal"
        )
        return SandboxEditError(
            f"{failed}, and deleting what was made failed too ({_why(undo)}); left in the "
            f"sandbox org: account {made.account_id}{deal} (never won, so never synced): "
            "delete that account"
        )
    return SandboxEditError(f"{failed}; nothing was left (the account made before it was deleted)")


def _why(exc: Exception) -> str:
    if isinstance(exc, SalesforceError):
        code, message = error_code(exc)
        return f"Salesforce answered {exc.status} {code}: {message}".strip(": ")
    return f"{type(exc).__name__}: no answer from the sandbox"


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
