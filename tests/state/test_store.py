"""The Redis store's compare-and-set rules, on fakeredis (with Lua)."""

from __future__ import annotations

import fakeredis
import pytest

from worker.state.keys import Keys
from worker.state.store import LockBusy, SyncStore


@pytest.fixture
def store() -> SyncStore:
    return SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("t"))


def test_one_poll_at_a_time_and_the_lock_expires(store: SyncStore) -> None:
    lease = store.acquire_poll_lock(ttl_s=60)
    assert lease is not None
    assert store.acquire_poll_lock() is None
    assert 0 < int(store.client.ttl("t:poll:lock")) <= 60
    store.release_poll_lock(lease)
    assert store.acquire_poll_lock() is not None


def test_a_stale_lease_cannot_release_the_new_holders_lock(store: SyncStore) -> None:
    old = store.acquire_poll_lock(ttl_s=60)
    assert old is not None
    store.client.delete("t:poll:lock")  # the TTL ran out while the old poll was stuck
    new = store.acquire_poll_lock()
    assert new is not None
    store.release_poll_lock(old)
    assert store.client.get("t:poll:lock") == new.token


def test_cursors_only_move_forward_and_only_for_the_newest_fence(store: SyncStore) -> None:
    first = store.acquire_poll_lock()
    assert first is not None
    assert store.advance_cursors(first, {"opportunities": "2026-11-01T00:00:00.000000Z"})
    assert store.advance_cursors(first, {"opportunities": "2026-10-01T00:00:00.000000Z"})
    assert store.cursors() == {"opportunities": "2026-11-01T00:00:00.000000Z"}

    store.client.delete("t:poll:lock")
    second = store.acquire_poll_lock()
    assert second is not None
    # The late first poll is fenced out; the newer one writes.
    assert not store.advance_cursors(first, {"opportunities": "2026-12-01T00:00:00.000000Z"})
    assert store.cursors()["opportunities"] == "2026-11-01T00:00:00.000000Z"
    assert store.advance_cursors(second, {"opportunities": "2026-11-02T00:00:00.000000Z"})
    assert store.cursors()["opportunities"] == "2026-11-02T00:00:00.000000Z"


def test_account_lock_is_exclusive_and_released(store: SyncStore) -> None:
    with store.account_lock("001A"):
        with pytest.raises(LockBusy), store.account_lock("001A"):
            pass
        with store.account_lock("001B"):
            pass
    with store.account_lock("001A"):
        pass


def test_account_state_round_trip(store: SyncStore) -> None:
    assert store.account_state("001A").state_hash is None
    store.finish_sync(
        "001A",
        state_hash="h1",
        customer_id="cust-1",
        owner_account_id="001A",
        outcome="created",
        ledger_entry={"account_id": "001A"},
    )
    state = store.account_state("001A")
    assert (state.state_hash, state.customer_id) == ("h1", "cust-1")
    store.forget_hash("001A")
    assert store.account_state("001A").state_hash is None
    assert store.account_state("001A").customer_id == "cust-1"


def test_generations_and_delivery_counts(store: SyncStore) -> None:
    assert store.current("001A") == 0
    assert store.bump("001A") == 1
    assert store.current("001A") == 1
    assert [store.count_delivery("task", 0) for _ in range(3)] == [1, 2, 3]
    assert store.count_delivery("task", 1) == 1


def test_reopened_are_the_ones_known_won(store: SyncStore) -> None:
    store.mark_won(["006A", "006B"])
    assert store.forget_won(["006B", "006C"]) == ["006B"]
    assert store.forget_won(["006B"]) == []


def test_dead_letters_keep_reason_and_snapshot(store: SyncStore) -> None:
    entry = store.dead_letter(
        account_id="001A",
        kind="mapping",
        reason="Account.Name: missing",
        task_id="t-1",
        snapshot={"AccountId": "001A"},
    )
    [letter] = store.dead_letters()
    assert letter.entry_id == entry
    assert letter.reason == "Account.Name: missing"
    assert letter.snapshot == {"AccountId": "001A"}
    store.delete_dead_letter(entry)
    assert store.dead_letters() == []
