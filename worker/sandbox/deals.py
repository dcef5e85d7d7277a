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


#: ``--type``: the Opportunity Type each kind of deal carries (the default mapping's
#: ``deal_kind``: Expansion edits the live contract, Renewal makes the next one).
DEAL_TYPES = {"new": "New Customer", "expansion": "Expansion", "renewal": "Renewal"}
#: The Types the default mapping reads as an expansion (an edit, not a contract of its own).
EXPANSION_TYPES = ("Expansion", "Existing Customer - Upgrade")


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
    deal = _deal_fields(name, rate_card, term_months, line_items, "new")
    items = resolve(line_items, read_catalogue(sf)) if line_items else []
    number = next(_unique)
    fields: dict[str, Any] = {
        "Name": name,
        "Billing_Email__c": email or f"billing+{number}@example.test",
        **(provider_fields(provider, number, "sandbox") if provider != "none" else {}),
    }
    made = _create(sf, fields, deal, items, won=won)
    return Edit(
        made.account_id,
        made.opportunity_id,
        "created with " + _told(deal, made.opportunity_id, items, won),
    )


def add_deal(
    sf: Salesforce,
    account_id: str,
    *,
    deal_type: str = "new",
    rate_card: str | None = None,
    term_months: int | None = None,
    line_items: Sequence[LineItemSpec] = (),
    won: bool = False,
) -> Edit:
    """One more deal on an existing account. An ``expansion`` edits the account's contract
    live on its start date (the default mapping finds it); a ``renewal`` is the next
    contract after the newest one a won deal made, which it names
    (Metronome_Parent_Opportunity__c). All or nothing, as :func:`add_account`."""
    account = normalize_salesforce_id(account_id)
    name = _require_account(sf, account)
    deal = _deal_fields(f"{name} {deal_type}", rate_card, term_months, line_items, deal_type)
    if deal_type == "renewal":
        deal["Metronome_Parent_Opportunity__c"] = _contract_deal(sf, account)
    items = resolve(line_items, read_catalogue(sf)) if line_items else []
    made = _create(sf, None, {**deal, "AccountId": account}, items, won=won)
    return Edit(
        account, made.opportunity_id, "added " + _told(deal, made.opportunity_id, items, won)
    )


def _contract_deal(sf: Salesforce, account_id: str) -> str:
    """The account's newest won deal that made a contract (a rate card, not an expansion):
    the one a renewal renews."""
    soql = format_soql(
        "SELECT Id, Type FROM Opportunity WHERE AccountId = {} AND IsWon = true "
        "AND Metronome_Rate_Card__c != null ORDER BY CreatedDate DESC",
        account_id,
    )
    for row in sf.query_all(soql)["records"]:
        if row["Type"] not in EXPANSION_TYPES:
            return str(row["Id"])
    raise SandboxEditError(
        f"account {account_id} has no won deal with a contract to renew: win one with "
        "--rate-card first"
    )


def _deal_fields(
    name: str,
    rate_card: str | None,
    term_months: int | None,
    line_items: Sequence[LineItemSpec],
    deal_type: str,
) -> dict[str, Any]:
    """The Opportunity to create, after the checks that need no org: a term in range, and
    a rate card wherever the default mapping needs one to make a contract."""
    if term_months is not None and not 1 <= term_months <= 120:
        raise SandboxEditError("--term-months must be between 1 and 120")
    if deal_type not in DEAL_TYPES:
        raise SandboxEditError(f"--type must be one of {', '.join(DEAL_TYPES)}")
    if deal_type == "renewal" and not rate_card:
        raise SandboxEditError(
            "a renewal makes the next contract: add --rate-card standard (or enterprise, startup)"
        )
    if line_items and not rate_card and deal_type != "expansion":
        raise SandboxEditError(
            "line items become contract terms only on a deal with a rate card: add "
            "--rate-card standard (or enterprise, startup)"
        )
    deal: dict[str, Any] = {
        "Name": f"{name[: DEAL_NAME_MAX - len(' deal')].rstrip()} deal",
        "StageName": OPEN_STAGE,
        "CloseDate": (datetime.now(UTC) + timedelta(days=30)).date().isoformat(),
        "Type": DEAL_TYPES[deal_type],
    }
    if rate_card:
        deal["Metronome_Rate_Card__c"] = rate_card
    if term_months is not None:
        deal["Contract_Term_Months__c"] = term_months
    return deal


def _told(deal: dict[str, Any], opportunity_id: str, items: Sequence[LineItem], won: bool) -> str:
    """What was made, as the command prints it: the deal, then one line per line item."""
    stage = WON_STAGE if won else OPEN_STAGE
    terms = "".join(
        f", {label} {deal[field]!r}"
        for field, label in (
            ("Metronome_Rate_Card__c", "rate card"),
            ("Metronome_Parent_Opportunity__c", "renewing the contract of"),
        )
        if field in deal
    )
    kind = deal["Type"].lower() if deal["Type"] != DEAL_TYPES["new"] else "deal"
    told = f"{'a won' if won else 'an open'} {kind} {opportunity_id} ({stage}{terms})"
    if items:
        told += ", sold as:" + "".join(f"\n  {item.describe()}" for item in items)
    return told


def read_catalogue(sf: Salesforce) -> list[Product]:
    """The org's active products, with what the default mapping reads of them."""
    soql = "SELECT Id, ProductCode, Name, Metronome_Kind__c FROM Product2 WHERE IsActive = true"
    return catalogue_of(sf.query_all(soql)["records"])


@dataclass
class _Made:
    """What :func:`_create` made so far, to undo or to report."""

    account_id: str = ""
    made_account: bool = False
    opportunity_id: str = ""
    lines: int = 0
    step: str = "the account"


def _create(
    sf: Salesforce,
    account: dict[str, Any] | None,
    deal: dict[str, Any],
    items: Sequence[LineItem],
    *,
    won: bool,
) -> _Made:
    """The account (unless ``account`` is None: ``deal`` names its AccountId), its deal, the
    deal's line items, then (``won``) the win: all or nothing."""
    made = _Made(account_id=str(deal.get("AccountId", "")))
    try:
        if account is not None:
            created = sf.Account.create(account)  # type: ignore[operator]
            made.account_id, made.made_account = normalize_salesforce_id(created["id"]), True
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
        if not _made_any(made) and isinstance(exc, requests.RequestException):
            raise  # nothing was made: the sandbox did not answer
        raise _undone(sf, made, len(items), exc) from exc
    return made


def _made_any(made: _Made) -> bool:
    return made.made_account or bool(made.opportunity_id)


def _undone(sf: Salesforce, made: _Made, planned_lines: int, exc: Exception) -> SandboxEditError:
    """The error for a creation that failed at ``made.step``, after deleting what it made:
    the account it made (its deal and line items go with it, as in Salesforce), else the
    deal it added (its line items go with it)."""
    failed = f"{made.step} failed ({_why(exc)})"
    if not _made_any(made):
        return SandboxEditError(f"{failed}; nothing was created")
    made_what = f"account {made.account_id}" if made.made_account else f"deal {made.opportunity_id}"
    try:
        if made.made_account:
            sf.Account.delete(made.account_id)  # type: ignore[operator]
        else:
            sf.Opportunity.delete(made.opportunity_id)  # type: ignore[operator]
    except (SalesforceError, requests.RequestException) as undo:
        lines = f"with {made.lines} of {planned_lines} line items"
        if not made.made_account:
            left = f"the open deal {made.opportunity_id} on account {made.account_id} {lines}"
        elif made.opportunity_id:
            left = f"account {made.account_id}, its open deal {made.opportunity_id} {lines}"
        else:
            left = f"account {made.account_id} without its deal"
        return SandboxEditError(
            f"{failed}, and deleting what was made failed too ({_why(undo)}); left in the "
            f"sandbox org: {left} (never won, so never synced): delete that "
            f"{'account' if made.made_account else 'deal'}"
        )
    return SandboxEditError(
        f"{failed}; nothing was left (the {made_what} made before it was deleted)"
    )


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


def _require_account(sf: Salesforce, account_id: str) -> str:
    """The account's name; an id the org does not hold is a SandboxEditError."""
    soql = format_soql("SELECT Id, Name FROM Account WHERE Id = {}", account_id)
    records = sf.query(soql)["records"]
    if not records:
        raise SandboxEditError(f"no account {account_id} in the sandbox org")
    return str(records[0]["Name"])
