"""Why crmsync never synced a record: Salesforce's side of ``crmsync history``.

When Redis knows nothing about an account (no sync, no dead letter, nothing parked), the answer
is in Salesforce: the account does not exist or was merged away, none of its deals is won, the
mapping refuses or rolls it up, or it is won and simply not polled yet. A few small queries
(the account with ``queryAll``, its deals, its won rows with the mapping's fields) tell which;
the mapping is applied exactly as a sync would apply it (pure, no Metronome call).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mappings import Mapping, MappingError
from worker.salesforce import queries
from worker.salesforce.cursors import parse_salesforce_datetime
from worker.salesforce.source import ClosedWonSource


@dataclass(frozen=True, slots=True)
class Explanation:
    """What Salesforce says: one short ``finding`` (a word to match on) and the lines."""

    finding: str  # no_such_record | merged | deleted | no_deal | not_won | mapping_error |
    # rolled_up | not_selected | no_contract_block | not_polled_yet
    lines: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def explain_account(
    source: ClosedWonSource, mapping: Mapping, account_id: str, cursor: datetime | None
) -> Explanation:
    """Why ``account_id`` has no customer, as Salesforce and the mapping see it."""
    account = _first(_rows(source, queries.account_by_id(account_id), include_deleted=True))
    if account is None:
        return Explanation(
            "no_such_record",
            [f"Salesforce has no account {account_id} (never existed, or purged after deletion)"],
        )
    if account.get("IsDeleted"):
        master = account.get("MasterRecordId")
        if master:
            return Explanation(
                "merged",
                [f"the account was merged into {master}: see `crmsync history {master}`"],
                {"master_record_id": master},
            )
        return Explanation("deleted", ["the account is deleted in Salesforce"])
    deals = list(_rows(source, queries.opportunities_of_account(account_id)))
    if not deals:
        return Explanation("no_deal", ["the account has no opportunity: nothing to bill yet"])
    won = [d for d in deals if d.get("IsWon")]
    if not won:
        stages = Counter(str(d.get("StageName")) for d in deals)
        listed = ", ".join(f"{stage} x{n}" for stage, n in stages.most_common())
        return Explanation(
            "not_won",
            [
                f"not won: {_count(len(deals), 'opportunity', 'opportunities')}, none won "
                f"({listed}); crmsync syncs won deals"
            ],
            {"stages": dict(stages)},
        )
    records = list(source.records_for_accounts([account_id]))
    if not records:  # won a moment ago, between the two queries
        return _not_polled(won[0], cursor)
    record = records[-1]
    try:
        desired = mapping.map_record(record)
    except MappingError as exc:
        return Explanation(
            "mapping_error",
            [f"won, but the mapping refuses it (its next sync dead-letters it): {exc}"],
        )
    if desired.salesforce_account_id != account_id:
        owner = desired.salesforce_account_id
        return Explanation(
            "rolled_up",
            [
                f"won; the mapping rolls it up to its top parent {owner}: it is billed through "
                f"that account's customer (`crmsync history {owner}`)"
            ],
            {"owner_account_id": owner},
        )
    return _not_polled(record, cursor)


def explain_opportunity(
    source: ClosedWonSource, mapping: Mapping, opportunity_id: str, cursor: datetime | None
) -> Explanation:
    """Why ``opportunity_id`` has no contract, as Salesforce and the mapping see it."""
    deal = _first(_rows(source, queries.opportunity_by_id(opportunity_id)))
    if deal is None:
        return Explanation("no_such_record", [f"Salesforce has no opportunity {opportunity_id}"])
    account_id = str(deal.get("AccountId") or "")
    facts = {"account_id": account_id}
    if not deal.get("IsWon"):
        return Explanation(
            "not_won",
            [f"not won (stage {deal.get('StageName')}); crmsync makes contracts of won deals"],
            facts,
        )
    if mapping.contract is None:
        return Explanation(
            "no_contract_block",
            ["won; the mapping has no contract block, so crmsync makes no contracts"],
            facts,
        )
    rows = [r for r in source.records_for_accounts([account_id]) if r.get("Id") == deal["Id"]]
    if not rows:
        return _not_polled(deal, cursor, facts)
    try:
        customer = mapping.map_record(rows[0])
        contract = mapping.map_contract(rows[0], customer)
    except MappingError as exc:
        return Explanation(
            "mapping_error",
            [f"won, but the mapping refuses it (its next sync dead-letters it): {exc}"],
            facts,
        )
    if contract is None:
        return Explanation(
            "not_selected",
            [
                "won; filtered by the mapping: its contract block's `when` does not select "
                "this deal (the default needs Metronome_Rate_Card__c)"
            ],
            facts,
        )
    return _not_polled(rows[0], cursor, facts)


def _not_polled(
    row: dict[str, Any], cursor: datetime | None, facts: dict[str, Any] | None = None
) -> Explanation:
    stamp_text = row.get("SystemModstamp")
    stamp = parse_salesforce_datetime(stamp_text) if isinstance(stamp_text, str) else None
    when = f"changed {stamp_text}" if stamp_text else "changed recently"
    if cursor is None or stamp is None or stamp > cursor:
        tail = "the next poll picks it up (or `crmsync resync` now)"
    else:
        tail = "older than the poll's cursor, so no poll will read it again: run `crmsync resync`"
    return Explanation(
        "not_polled_yet",
        [f"won and mappable (opportunity {row.get('Id')}, {when}), not synced yet: {tail}"],
        {**(facts or {}), "opportunity_id": row.get("Id"), "system_modstamp": stamp_text},
    )


def _rows(
    source: ClosedWonSource, soql: str, *, include_deleted: bool = False
) -> Iterator[dict[str, Any]]:
    for page in source.pages(soql, include_deleted=include_deleted):
        yield from page


def _first(rows: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
    return next(rows, None)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
