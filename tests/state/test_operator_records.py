"""The ledger index, grouped dead letters and attention items, on a real redis-server (their
Lua scripts run as Redis runs them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from worker.ops.history import build_history, parse_since
from worker.state.attention import UnknownItem
from worker.state.server import RedisServer
from worker.state.store import SyncStore

ACCOUNT = "001000000000001AAA"
OTHER = "001000000000002AAA"
DEAL = "006000000000001AAA"


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[SyncStore]:
    store = SyncStore.from_url(redis_server.url, "records-test")
    yield store
    store.client.close()


def test_an_accounts_ledger_entries_are_found_through_its_index(store: SyncStore) -> None:
    first = store.append_ledger({"account_id": ACCOUNT, "outcome": "created", "calls": 2})
    store.append_ledger({"account_id": OTHER, "outcome": "created"})
    contract = store.append_ledger(
        {"account_id": ACCOUNT, "opportunity_id": DEAL, "outcome": "contract_created"}
    )
    store.append_ledger({"account_id": "-", "outcome": "dead_lettered"})  # names nothing
    found = store.ledger_log.entries_for([ACCOUNT])
    assert [e["id"] for e in found] == [contract, first]  # newest first
    assert [e["id"] for e in store.ledger_log.entries_for([DEAL])] == [contract]
    assert [e["id"] for e in store.ledger_log.entries_for([ACCOUNT], limit=1)] == [contract]
    later = int(contract.split("-")[0]) + 1
    assert store.ledger_log.entries_for([ACCOUNT], since_ms=later) == []
    assert not store.client.exists(store.keys.ledger_index("-"))


def test_a_ledger_written_before_the_index_is_scanned(store: SyncStore) -> None:
    old = store.client.xadd(store.keys.ledger, {"account_id": ACCOUNT, "outcome": "updated"})
    store.client.xadd(store.keys.ledger, {"account_id": OTHER, "outcome": "updated"})
    assert [e["id"] for e in store.ledger_log.entries_for([ACCOUNT])] == [old]


def test_dead_letters_group_per_account_and_kind(store: SyncStore) -> None:
    for attempt in range(3):
        store.dead_letter(
            account_id=ACCOUNT,
            kind="mapping",
            reason=f"aws_region: attempt {attempt}",
            task_id=f"t{attempt}",
            snapshot={"AccountId": ACCOUNT, "n": attempt},
            trigger="resync",
        )
    store.dead_letter(
        account_id=ACCOUNT, kind="permanent", reason="400", task_id="t9", snapshot=None
    )
    mapping, permanent = store.dead_letters()
    assert (mapping.kind, mapping.count, mapping.reason) == ("mapping", 3, "aws_region: attempt 2")
    assert mapping.snapshot == {"AccountId": ACCOUNT, "n": 2} and mapping.trigger == "resync"
    assert (permanent.kind, permanent.count) == ("permanent", 1)
    assert store.dead_letter_book.open_count() == 2
    # Every attempt is one stream entry; only the first of a group opened it.
    attempts = store.dead_letter_book.occurrences_since()
    assert [a.opened for a in attempts] == [True, False, False, True]
    # Each attempt is in the account's ledger too (its history).
    entries = store.ledger_log.entries_for([ACCOUNT])
    assert [e["outcome"] for e in entries] == ["dead_lettered"] * 4


def test_messages_naming_no_account_are_never_grouped(store: SyncStore) -> None:
    for _ in range(2):
        store.dead_letter(
            account_id="-", kind="unknown_task", reason="no task", task_id="x", snapshot=None
        )
    assert [d.count for d in store.dead_letters()] == [1, 1]


def test_a_successful_sync_resolves_the_account_but_not_a_deals_contract(
    store: SyncStore,
) -> None:
    store.dead_letter(
        account_id=ACCOUNT, kind="transient_exhausted", reason="5xx", task_id="a", snapshot=None
    )
    store.dead_letter(
        account_id=ACCOUNT,
        kind="contract",
        reason="unknown rate card",
        task_id="a",
        snapshot=None,
        opportunity_id=DEAL,
    )
    book = store.dead_letter_book
    assert book.resolve(ACCOUNT, by="sync-1", how="updated") == 1
    [contract] = store.dead_letters()
    assert contract.kind == "contract" and contract.opportunity_id == DEAL
    assert book.resolve(ACCOUNT, opportunity_id=DEAL, by="sync-2", how="contract_created") == 1
    assert store.dead_letters() == []
    resolved = {d.kind: d for d in book.groups(include_resolved=True)}
    assert resolved["transient_exhausted"].resolved_by == "sync-1"
    assert resolved["contract"].resolved_how == "contract_created"
    assert book.resolve(OTHER, by="x", how="created") == 0  # nothing of its own: a no-op


def test_attention_items_dedupe_ack_and_reopen(store: SyncStore) -> None:
    book = store.attention
    first = book.record("opportunity_reopened", record_id=DEAL, account_id=ACCOUNT)
    again = book.record("opportunity_reopened", record_id=DEAL, account_id=ACCOUNT)
    other = book.record(
        "account_merged", record_id=OTHER, account_id=OTHER, details={"master_record_id": ACCOUNT}
    )
    assert first.opened and not again.opened and first.item_id == again.item_id
    assert other.opened and book.open_by_event() == {
        "opportunity_reopened": 1,
        "account_merged": 1,
    }
    assert store.outcomes()["needs_attention"] == 3  # each occurrence is counted
    [merged, reopened] = book.items()
    assert reopened.count == 2 and "archived nothing" in reopened.what_to_do
    assert merged.details == {"master_record_id": ACCOUNT}
    assert book.acknowledge(first.item_id, by="ops", note="lost deal, contract ended")
    assert not book.acknowledge(first.item_id, by="ops")  # already done: kept as it was
    with pytest.raises(UnknownItem):
        book.acknowledge("999")
    assert [i.id for i in book.items()] == [other.item_id]
    acked = book.get(first.item_id)
    assert acked is not None and (acked.status, acked.acked_by) == ("acked", "ops")
    # Seen again after the acknowledgement: a new item.
    anew = book.record("opportunity_reopened", record_id=DEAL, account_id=ACCOUNT)
    assert anew.opened and anew.item_id != first.item_id


def test_history_verdicts(store: SyncStore) -> None:
    assert build_history(store, ACCOUNT).needs_explaining  # never seen: ask Salesforce
    store.dead_letter(
        account_id=ACCOUNT, kind="mapping", reason="bad region", task_id="t", snapshot=None
    )
    history = build_history(store, ACCOUNT)
    assert history.verdict.startswith("no customer: dead-lettered [mapping] once: bad region")
    store.finish_sync(
        ACCOUNT,
        state_hash="h",
        customer_id="cust-1",
        owner_account_id=ACCOUNT,
        outcome="created",
        ledger_entry={"account_id": ACCOUNT, "outcome": "created", "task_id": "t2"},
    )
    history = build_history(store, ACCOUNT)
    assert history.verdict.startswith("synced: customer cust-1")
    assert [e.outcome for e in history.timeline] == [
        "dead_letter_resolved",
        "created",
        "dead_lettered",
    ]
    assert history.timeline[0].task_id == "t2"  # resolved by the sync that created it


def test_history_shows_a_parked_sync_of_the_account_and_of_its_deal(store: SyncStore) -> None:
    from worker.outages.parking import Parking

    record = {"Id": DEAL, "AccountId": ACCOUNT, "Account": {"Id": ACCOUNT, "Name": "Acme"}}
    Parking(store.client, store.keys).park(ACCOUNT, record, reason="create answered 503")
    for record_id in (ACCOUNT, DEAL):
        history = build_history(store, record_id)
        [parked] = history.parked
        assert (parked.account_id, parked.reason) == (ACCOUNT, "create answered 503")
        assert "parked since" in history.verdict and not history.needs_explaining
    assert build_history(store, OTHER).parked == []


def test_since_takes_durations_and_dates() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", now)
