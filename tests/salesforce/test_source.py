"""ClosedWonSource against the emulator, through simple-salesforce and real HTTP."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from tests.support.salesforce_emulator import MAPPING_FIELDS, sobject
from worker.salesforce import (
    ClosedWonSource,
    Cursors,
    InvalidSalesforceId,
    QuotaReached,
    SalesforceNotConfigured,
    SessionExpired,
    build_salesforce,
)
from worker.sandbox.salesforce import SalesforceEmulator
from worker.sandbox.salesforce.client import build_sandbox_salesforce
from worker.settings import SalesforceAuthMode, Settings

WON = {"StageName": "Closed Won"}


def open_deal(emulator: SalesforceEmulator, account: str, name: str = "deal") -> str:
    fields = {
        "AccountId": account,
        "Name": name,
        "StageName": "Prospecting",
        "CloseDate": "2026-06-30",
    }
    return emulator.insert("Opportunity", fields)


def poll(
    source: ClosedWonSource, cursors: Cursors, *, with_events: bool = True
) -> tuple[list[dict[str, Any]], Any]:
    reader = source.poll(cursors, with_events=with_events)
    rows = list(reader)
    return rows, reader


def test_rows_have_the_mapping_shape_without_attributes(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    top = emulator.insert("Account", {"Name": "Top"})
    child = emulator.insert("Account", {"Name": "Child 株式会社", "ParentId": top})
    deal = open_deal(emulator, child)
    emulator.update("Opportunity", deal, WON)
    # the mapping's list names Id and account.id itself: the source must not select them twice
    source = ClosedWonSource(sf, [*MAPPING_FIELDS, "account.id"])
    rows, reader = poll(source, Cursors())
    assert len(rows) == 1
    row = rows[0]
    assert row["Id"] == deal and row["AccountId"] == child
    assert row["Account"]["Name"] == "Child 株式会社"
    assert row["Account"]["Parent"] == {"Id": top, "Parent": None}
    assert "attributes" not in row and "attributes" not in row["Account"]
    assert type(row) is dict and type(row["Account"]) is dict
    assert reader.salesforce_calls == 1 and reader.events == []
    stamp = emulator.get("Opportunity", deal)["SystemModstamp"]
    assert reader.new_cursors.opportunities == stamp
    assert reader.new_cursors.accounts == emulator.get("Account", child)["SystemModstamp"]


def test_incremental_polls_see_a_deal_closed_by_a_sales_rep(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.seed(30, seed=5, won_fraction=0.5)
    source = ClosedWonSource(sf, MAPPING_FIELDS, overlap_s=0)
    first, reader = poll(source, Cursors())
    won_ids = {r["Id"] for r in first}
    assert won_ids and len(won_ids) == len(first)
    # The second poll may still move the event cursors past open deals seeded after the
    # last won one (events for them: the pipeline ignores deals it never knew as won).
    cursors = poll(source, reader.new_cursors)[1].new_cursors
    again, reader = poll(source, cursors)
    assert again == [] and reader.new_cursors == cursors  # nothing changed: a fixed point

    account = emulator.insert("Account", {"Name": "Rep's account"})
    rep = build_sandbox_salesforce(emulator.url)  # the rep's own edit, through the REST API
    deal = sobject(rep, "Opportunity").create(
        {"AccountId": account, "Name": "New", "StageName": "Prospecting", "CloseDate": "2026-07-01"}
    )["id"]
    assert poll(source, cursors)[0] == []  # open deals are not billing customers
    sobject(rep, "Opportunity").update(deal, WON)
    rows, reader = poll(source, cursors)
    assert [r["Id"] for r in rows] == [deal]
    assert reader.new_cursors.opportunities is not None and cursors.opportunities is not None
    assert reader.new_cursors.opportunities > cursors.opportunities
    rep.session.close()


def test_a_late_commit_inside_the_overlap_is_seen_and_each_change_once(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    """ "Once per change": every (Id, SystemModstamp) version of a won deal is delivered by the
    first poll after it becomes visible -- including a version stamped *before* the cursor
    (a long transaction committing late). Re-deliveries of an unchanged version happen only
    while it is inside the overlap window, and carry the identical row, which the pipeline's
    hash dedupe drops; across the polls below the distinct versions delivered are exactly the
    versions written."""
    account = emulator.insert("Account", {"Name": "Late Co"})
    other = emulator.insert("Account", {"Name": "Other"})
    late = open_deal(emulator, account, "late")
    anchor = open_deal(emulator, other, "anchor")
    emulator.update("Opportunity", anchor, WON)
    with_overlap = ClosedWonSource(sf, MAPPING_FIELDS, overlap_s=300)
    without_overlap = ClosedWonSource(sf, MAPPING_FIELDS, overlap_s=0)
    _, reader = poll(with_overlap, Cursors())
    cursors = reader.new_cursors
    assert cursors.opportunities is not None

    # A transaction that began 60 s before the cursor closes the deal and commits now.
    emulator.update(
        "Opportunity", late, WON, late_commit_at=cursors.opportunities - timedelta(seconds=60)
    )
    missed, _ = poll(without_overlap, cursors)
    assert late not in {r["Id"] for r in missed}  # without the overlap the deal is lost...
    rows, reader = poll(with_overlap, cursors)
    delivered = [(r["Id"], r["SystemModstamp"]) for r in rows]
    assert [i for i, _ in delivered].count(late) == 1  # ...with it, seen, once in this poll

    versions_written = {emulator.get("Opportunity", late)["SystemModstamp"]}
    versions_seen = {s for i, s in delivered if i == late}
    emulator.update("Opportunity", late, {"Amount": 99})
    versions_written.add(emulator.get("Opportunity", late)["SystemModstamp"])
    rows, reader = poll(with_overlap, reader.new_cursors)
    late_rows = [r for r in rows if r["Id"] == late]
    assert len(late_rows) == 1 and late_rows[0]["Amount"] == 99.0
    versions_seen |= {r["SystemModstamp"] for r in late_rows}
    assert {_parse(v) for v in versions_seen} == versions_written


def _parse(value: str) -> Any:
    from worker.salesforce.cursors import parse_salesforce_datetime

    return parse_salesforce_datetime(value)


def test_an_account_rename_alone_is_seen(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    account = emulator.insert("Account", {"Name": "Old Name"})
    deal = open_deal(emulator, account)
    emulator.update("Opportunity", deal, WON)
    source = ClosedWonSource(sf, MAPPING_FIELDS, overlap_s=0)
    _, reader = poll(source, Cursors())
    cursors = reader.new_cursors
    deal_stamp = emulator.get("Opportunity", deal)["SystemModstamp"]
    emulator.update("Account", account, {"Name": "New Name"})
    assert emulator.get("Opportunity", deal)["SystemModstamp"] == deal_stamp  # deal untouched
    rows, reader = poll(source, cursors)
    assert [(r["Id"], r["Account"]["Name"]) for r in rows] == [(deal, "New Name")]
    assert reader.new_cursors.accounts == emulator.get("Account", account)["SystemModstamp"]
    assert reader.new_cursors.opportunities == cursors.opportunities
    assert poll(source, reader.new_cursors)[0] == []


def test_reopened_deals_and_merged_accounts_come_out_as_events(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    master = emulator.insert("Account", {"Name": "Master"})
    loser = emulator.insert("Account", {"Name": "Dupe"})
    reopened = open_deal(emulator, master, "reopened")
    moved = open_deal(emulator, loser, "moved")
    for deal in (reopened, moved):
        emulator.update("Opportunity", deal, WON)
    source = ClosedWonSource(sf, MAPPING_FIELDS, overlap_s=0)
    _, reader = poll(source, Cursors())
    cursors = reader.new_cursors

    emulator.update("Opportunity", reopened, {"StageName": "Negotiation/Review"})
    emulator.merge_accounts(master, loser)
    rows, reader = poll(source, cursors)
    # the merge moved the loser's won deal to the master: a changed won row, not dropped
    assert [(r["Id"], r["AccountId"]) for r in rows] == [(moved, master)]
    by_kind = {(e.kind, e.record_id): e for e in reader.events}
    event = by_kind[("opportunity_reopened", reopened)]
    assert event.account_id == master and event.stage_name == "Negotiation/Review"
    merged = by_kind[("account_merged", loser)]
    assert merged.master_record_id == master
    assert len(reader.events) == 2
    # next poll: events are not repeated once the cursors moved past them
    _, after = poll(source, reader.new_cursors)
    assert after.events == []


def test_quota_at_the_configured_fraction_stops_the_poll_with_cursors_unchanged(
    emulator: SalesforceEmulator, sf: Salesforce, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.seed(5)
    source = ClosedWonSource(sf, MAPPING_FIELDS, quota_fraction=0.8)
    start = Cursors()
    emulator.set_quota(used=798, max=1000)
    rows, reader = poll(source, start)  # the first query lands at 799/1000: still under 80 %
    assert rows and not reader.stopped_for_quota
    emulator.set_quota(used=799, max=1000)
    with caplog.at_level(logging.WARNING, logger="worker.salesforce.source"):
        rows, reader = poll(source, start)  # this query lands at 800/1000
    assert rows == [] and reader.stopped_for_quota
    assert reader.new_cursors == start and reader.events == []
    assert "800/1000" in caplog.text and "cursors unchanged" in caplog.text

    emulator.set_quota(used=1000, max=1000)  # exhausted: Salesforce answers 403
    calls_before = emulator.api_calls()
    rows, reader = poll(source, start)
    assert rows == [] and reader.stopped_for_quota and reader.new_cursors == start
    assert emulator.api_calls() == calls_before  # refused calls are not counted
    assert emulator.request_counts()["query 403"] == 1


def test_an_expired_session_logs_in_again(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    emulator.seed(3)
    source = ClosedWonSource(sf, MAPPING_FIELDS)
    assert len(list(source.poll(Cursors()))) == 3
    emulator.expire_sessions()
    assert len(list(source.poll(Cursors()))) == 3
    counts = emulator.request_counts()
    assert counts["soap_login 200"] == 2 and counts["query 401"] == 1


def test_an_expired_pre_issued_session_fails_clearly(emulator: SalesforceEmulator) -> None:
    sf = build_sandbox_salesforce(
        emulator.url, mode=SalesforceAuthMode.SESSION, session_id=emulator.issue_session()
    )
    source = ClosedWonSource(sf, MAPPING_FIELDS)
    list(source.poll(Cursors()))
    emulator.expire_sessions()
    with pytest.raises(SessionExpired, match="cannot be renewed") as caught:
        list(source.poll(Cursors()))
    assert sf.session_id not in str(caught.value)
    sf.session.close()


def test_a_malformed_id_is_refused_before_any_request(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    source = ClosedWonSource(sf, MAPPING_FIELDS)
    account = emulator.insert("Account", {"Name": "Fine"})
    before = emulator.request_counts()
    for bad in ("001' OR Name != '", "001Hp0000", account[:15] + "ZZZ"):
        with pytest.raises(InvalidSalesforceId):
            source.records_for_accounts([account, bad])
    assert emulator.request_counts() == before


def test_resync_helpers_batch_ids_and_select_by_time(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.seed(450, seed=9)
    accounts = emulator.ids("Account")
    source = ClosedWonSource(sf, MAPPING_FIELDS)
    emulator.reset()
    rows = list(source.records_for_accounts([a[:15] for a in accounts] + accounts[:3]))
    assert {r["AccountId"] for r in rows} == set(accounts)  # seed: every account has a won deal
    assert emulator.request_counts()["query 200"] == 3  # 450 ids, 200 per IN (...)
    assert len(list(source.all_records())) == len(rows)

    target = accounts[7]
    stamp = emulator.get("Account", accounts[-1])["SystemModstamp"]
    emulator.update("Account", target, {"Website": "https://changed.example"})
    since = [r["AccountId"] for r in source.records_since(stamp + timedelta(milliseconds=1))]
    assert target in since and len(set(since)) <= 3


def test_paging_through_the_source_reads_each_row_once(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.seed(1100, seed=2)
    source = ClosedWonSource(sf, MAPPING_FIELDS, batch_size=200)
    rows, reader = poll(source, Cursors())
    ids = [r["Id"] for r in rows]
    assert len(ids) == len(set(ids)) == 1100
    assert reader.salesforce_calls == 6  # ceil(1100 / 200) pages, no per-row queries
    stamps = [r["SystemModstamp"] for r in rows]
    assert stamps == sorted(stamps)


def test_cursors_round_trip_through_json() -> None:
    from datetime import UTC, datetime

    cursors = Cursors(opportunities=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    assert Cursors.from_json(cursors.to_json()) == cursors
    assert Cursors.from_json(None) == Cursors()


def test_resync_helpers_surface_the_quota_brake(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.seed(2)
    emulator.set_quota(used=900, max=1000)
    with pytest.raises(QuotaReached, match="901/1000"):
        list(ClosedWonSource(sf, MAPPING_FIELDS).all_records())


def test_no_salesforce_settings_is_a_clear_error() -> None:
    with pytest.raises(SalesforceNotConfigured, match="crmsync demo"):
        build_salesforce(Settings())


def test_a_deal_and_its_account_changed_together_come_out_once(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    account = emulator.insert("Account", {"Name": "Both"})
    deal = open_deal(emulator, account)
    emulator.update("Opportunity", deal, WON)
    source = ClosedWonSource(sf, MAPPING_FIELDS, overlap_s=0)
    cursors = poll(source, Cursors())[1].new_cursors
    emulator.update("Account", account, {"Name": "Both, renamed"})
    emulator.update("Opportunity", deal, {"Amount": 5})
    rows, reader = poll(source, cursors)
    assert [(r["Id"], r["Account"]["Name"], r["Amount"]) for r in rows] == [
        (deal, "Both, renamed", 5.0)
    ]
    assert reader.salesforce_calls == 3  # won-or-account-changed, re-opened, deleted


def test_a_quiet_poll_without_the_event_streams_costs_one_query(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    """The event streams run every few minutes, not every poll (the caller decides)."""
    emulator.seed(30, seed=4)
    source = ClosedWonSource(sf, MAPPING_FIELDS, overlap_s=0)
    _, first = poll(source, Cursors())
    rows, reader = poll(source, first.new_cursors, with_events=False)
    assert rows == []
    assert reader.salesforce_calls == 1
    assert reader.new_cursors == first.new_cursors
