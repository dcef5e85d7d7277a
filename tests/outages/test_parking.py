"""The parking (worker/outages/parking.py) on fakeredis: one entry per account with its
newest snapshot
and every won deal, since/attempts kept, a backoff capped at minutes, claims that are leases."""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import pytest

from mappings.contracts.engine import WON_OPPORTUNITIES_KEY, won_opportunity_rows
from worker.outages.parking import Parking, merge_snapshots
from worker.state.keys import Keys

ACCOUNT = "001000000000001AAA"


def snapshot(
    opportunity: str, stamp: str, name: str = "Acme", others: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "Id": opportunity,
        "AccountId": ACCOUNT,
        "SystemModstamp": stamp,
        "Account": {"Id": ACCOUNT, "Name": name, "SystemModstamp": stamp},
    }
    if others:
        record[WON_OPPORTUNITIES_KEY] = others
    return record


def deal(opportunity: str, stamp: str) -> dict[str, Any]:
    return {"Id": opportunity, "AccountId": ACCOUNT, "SystemModstamp": stamp}


OLD = "2026-11-20T10:00:00.000+0000"
NEW = "2026-11-21T10:00:00.000+0000"
DEAL_X, DEAL_Y = "006000000000001AAA", "006000000000002AAA"


@pytest.fixture
def parking() -> Parking:
    return Parking(fakeredis.FakeRedis(decode_responses=True), Keys("p"), backoff_max_s=300)


def test_the_newer_snapshot_wins_and_no_won_deal_is_lost() -> None:
    older = snapshot(DEAL_Y, OLD, "Old name", others=[deal(DEAL_X, OLD)])
    newer = snapshot(DEAL_Y, NEW, "New name")
    for merged in (merge_snapshots(older, newer), merge_snapshots(newer, older)):
        assert merged["Account"]["Name"] == "New name"
        assert sorted(row["Id"] for row in won_opportunity_rows(merged)) == [DEAL_X, DEAL_Y]


def test_parking_an_account_twice_keeps_one_entry_its_first_time_and_counts(
    parking: Parking,
) -> None:
    first = parking.park(ACCOUNT, snapshot(DEAL_X, OLD), reason="create answered 503", now=1000)
    second = parking.park(ACCOUNT, snapshot(DEAL_Y, NEW, "Renamed"), reason="breaker open")
    assert parking.count() == 1
    assert (second.since, second.attempts, second.reason) == (1000, 2, "breaker open")
    assert first.attempts == 1
    stored = parking.get(ACCOUNT)
    assert stored is not None and stored.record["Account"]["Name"] == "Renamed"
    assert sorted(row["Id"] for row in won_opportunity_rows(stored.record)) == [DEAL_X, DEAL_Y]
    assert parking.oldest() == stored


def test_the_backoff_doubles_up_to_minutes_never_hours(parking: Parking) -> None:
    ceilings = [max(parking.backoff_s(n) for _ in range(50)) for n in range(1, 12)]
    assert ceilings[0] <= 5 and all(c <= 300 for c in ceilings)
    assert ceilings[-1] > 150  # the cap is reached, with jitter below it


def test_a_sent_sync_stays_parked_until_its_replay_ends(parking: Parking) -> None:
    record = snapshot(DEAL_X, OLD)
    parking.park(ACCOUNT, record, reason="503")
    assert parking.make_due([ACCOUNT, "001000000000009AAA"]) == [ACCOUNT]
    [sent] = parking.claim(limit=10, lease_s=60)
    assert sent.record == record and parking.count() == 1
    assert parking.claim(limit=10, lease_s=60, due_by=float("inf")) == []  # sent once
    assert parking.reclaim(limit=10, lease_s=60) == []  # its lease has not run out
    assert parking.finish(ACCOUNT, record) is True
    assert parking.count() == 0 and parking.items() == []


def test_a_replay_that_never_ends_can_be_sent_again_after_its_lease(parking: Parking) -> None:
    parking.park(ACCOUNT, snapshot(DEAL_X, OLD), reason="503")
    parking.make_due()
    [sent] = parking.claim(limit=10, lease_s=0)  # a lease already run out
    [again] = parking.reclaim(limit=10, lease_s=60)
    assert again.record == sent.record
    assert parking.reclaim(limit=10, lease_s=60) == []
    # Parked again meanwhile (the replay failed): it waits, out of the sent set.
    parking.park(ACCOUNT, snapshot(DEAL_X, OLD), reason="still 503", now=time.time() - 10)
    assert parking.reclaim(limit=10, lease_s=0) == []
    assert [i.account_id for i in parking.claim(limit=10, lease_s=60)] == [ACCOUNT]


def test_a_newer_snapshot_parked_during_the_replay_stays_parked(parking: Parking) -> None:
    replayed = snapshot(DEAL_X, OLD)
    parking.park(ACCOUNT, replayed, reason="503")
    parking.park(ACCOUNT, snapshot(DEAL_X, NEW, "Renamed"), reason="breaker open")
    assert parking.finish(ACCOUNT, replayed) is False
    left = parking.get(ACCOUNT)
    assert left is not None and left.record["Account"]["Name"] == "Renamed"
    assert left.next_at is not None and left.next_at <= time.time()  # due at once


def test_expiry_is_by_the_first_park(parking: Parking) -> None:
    item = parking.park(ACCOUNT, snapshot(DEAL_X, OLD), reason="503", now=time.time() - 90_000)
    assert parking.expired(item) and parking.expired_accounts() == [ACCOUNT]
    assert parking.make_due(["001000000000009AAA"]) == []  # not parked: nothing made due
