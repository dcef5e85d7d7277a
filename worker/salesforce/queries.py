"""The SOQL the source sends, built in one place from validated inputs (pure, no I/O).

Values go through simple-salesforce's ``format_soql`` (quoting and escaping), never string
pasting; field names come from the mapping and are checked against a strict pattern, because
they cannot be quoted. Datetimes lose their sub-second part in ``format_soql``; the cursor
minus the overlap is floored to the second, which only widens the window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from simple_salesforce.format import format_soql

#: What the source itself reads from every row, whatever the mapping asks for.
SOURCE_FIELDS = ("Id", "AccountId", "SystemModstamp", "Account.Id", "Account.SystemModstamp")
# SOQL allows five child-to-parent hops (Opportunity.Account.Parent.Parent.Parent.Parent.Id).
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*){0,5}$")
ORDER_BY_STAMP = "ORDER BY SystemModstamp, Id"


def select_list(mapping_fields: Iterable[str], line_item_fields: Iterable[str] = ()) -> str:
    """The mapping's fields plus the source's own, case-insensitively without duplicates,
    and the line items' subquery when the mapping reads line items.

    Salesforce refuses a SELECT that names a field twice (``duplicate field selected``).
    """
    out = _fields((*mapping_fields, *SOURCE_FIELDS))
    children = _fields(line_item_fields)
    if children:
        # One query reads each deal with its line items (a parent-to-child subquery): no
        # query per deal, the poll's and the listener's re-read alike.
        out.append(f"(SELECT {', '.join(children)} FROM {LINE_ITEMS} ORDER BY SortOrder, Id)")  # noqa: S608 -- validated field paths
    return ", ".join(out)


#: The Opportunity's child relationship to its line items.
LINE_ITEMS = "OpportunityLineItems"


def _fields(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        if not _FIELD_RE.fullmatch(name):
            raise ValueError(f"not a SOQL field path: {name!r}")
        if name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


def won_changed_since(fields: str, since: datetime | None) -> str:
    """Won opportunities whose own stamp moved (closed, re-assigned, amount edited...)."""
    if since is None:
        return f"SELECT {fields} FROM Opportunity WHERE IsWon = true {ORDER_BY_STAMP}"  # noqa: S608
    return format_soql(
        "SELECT {fields:literal} FROM Opportunity WHERE IsWon = true AND SystemModstamp > {since} "  # noqa: S608 -- format_soql quotes
        + ORDER_BY_STAMP,
        fields=fields,
        since=since,
    )


def won_or_account_changed_since(fields: str, won_since: datetime, account_since: datetime) -> str:
    """One query for both incremental streams: deals whose own stamp moved, and deals whose
    *Account* changed (an account edit never bumps the deal's stamp). One query instead of two
    is what makes a quiet poll cost a single API call."""
    return format_soql(
        "SELECT {fields:literal} FROM Opportunity WHERE IsWon = true "  # noqa: S608 -- format_soql quotes
        "AND (SystemModstamp > {won_since} OR Account.SystemModstamp > {account_since}) "
        + ORDER_BY_STAMP,
        fields=fields,
        won_since=won_since,
        account_since=account_since,
    )


def won_account_changed_since(fields: str, since: datetime) -> str:
    """Won opportunities whose *Account* changed: an account edit never bumps the deal's stamp."""
    return format_soql(
        "SELECT {fields:literal} FROM Opportunity WHERE IsWon = true "
        "AND Account.SystemModstamp > {since} ORDER BY Account.SystemModstamp, Id",
        fields=fields,
        since=since,
    )


def not_won_changed_since(since: datetime) -> str:
    return format_soql(
        "SELECT Id, AccountId, StageName, SystemModstamp FROM Opportunity "  # noqa: S608 -- format_soql quotes
        "WHERE IsWon = false AND SystemModstamp > {since} " + ORDER_BY_STAMP,
        since=since,
    )


def deleted_accounts_since(since: datetime) -> str:
    """For ``queryAll``: merged-away accounts carry ``MasterRecordId``, plain deletes do not."""
    return format_soql(
        "SELECT Id, MasterRecordId, SystemModstamp FROM Account "  # noqa: S608 -- format_soql quotes
        "WHERE IsDeleted = true AND SystemModstamp > {since} " + ORDER_BY_STAMP,
        since=since,
    )


def won_for_accounts(fields: str, account_ids: Sequence[str]) -> str:
    """``account_ids`` must already be normalised 18-character ids."""
    return format_soql(
        "SELECT {fields:literal} FROM Opportunity WHERE IsWon = true AND AccountId IN {ids} "  # noqa: S608 -- format_soql quotes
        + ORDER_BY_STAMP,
        fields=fields,
        ids=list(account_ids),
    )


def won_touched_since(fields: str, since: datetime) -> str:
    return format_soql(
        "SELECT {fields:literal} FROM Opportunity WHERE IsWon = true "  # noqa: S608 -- format_soql quotes
        "AND (SystemModstamp > {since} OR Account.SystemModstamp > {since}) " + ORDER_BY_STAMP,
        fields=fields,
        since=since,
    )


#: How many of an account's deals ``crmsync history`` reads to say why it has no customer.
EXPLAIN_LIMIT = 50


def opportunities_of_account(account_id: str) -> str:
    """Every deal of one account, won or not, newest first (``crmsync history``)."""
    return format_soql(
        "SELECT Id, Name, StageName, IsWon, SystemModstamp FROM Opportunity "
        "WHERE AccountId = {id} ORDER BY SystemModstamp DESC LIMIT {limit}",
        id=account_id,
        limit=EXPLAIN_LIMIT,
    )


def opportunity_by_id(opportunity_id: str) -> str:
    return format_soql(
        "SELECT Id, AccountId, Name, StageName, IsWon, SystemModstamp FROM Opportunity "
        "WHERE Id = {id}",
        id=opportunity_id,
    )


def account_by_id(account_id: str) -> str:
    """For ``queryAll``: a deleted or merged-away account is found too, with its master."""
    return format_soql(
        "SELECT Id, Name, IsDeleted, MasterRecordId FROM Account WHERE Id = {id}",
        id=account_id,
    )


def won_for_ids(fields: str, opportunity_ids: Sequence[str], account_ids: Sequence[str]) -> str:
    """Won deals by their own id or their account's: what change events name. One query for
    a burst of both kinds (already normalised 18-character ids; at least one list non-empty)."""
    clauses = []
    values: dict[str, list[str]] = {}
    if opportunity_ids:
        clauses.append("Id IN {opportunities}")
        values["opportunities"] = list(opportunity_ids)
    if account_ids:
        clauses.append("AccountId IN {accounts}")
        values["accounts"] = list(account_ids)
    if not clauses:
        raise ValueError("won_for_ids needs at least one id")
    return format_soql(
        "SELECT {fields:literal} FROM Opportunity WHERE IsWon = true "  # noqa: S608 -- format_soql quotes
        f"AND ({' OR '.join(clauses)}) " + ORDER_BY_STAMP,
        fields=fields,
        **values,
    )
