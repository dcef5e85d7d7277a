"""The per-account lock is a lease: a killed holder frees it quickly, and waiting for it never
dead-letters a close.

Found by the chaos run (seed 2): a worker SIGKILLed mid-sync left its account lock for the
fixed 330 s TTL; the killed message's redelivery and the rescan's message for the same account
met "lock busy" on every retry, used up the retry budget and were dead-lettered
(transient_exhausted), one customer was left without its Salesforce link.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from mappings import load_default_mapping
from tasks.sync import Done, Retry, run_sync
from tests.support.bad_answers import ACCOUNT, TOKEN, record
from worker.context import WorkerContext
from worker.sandbox.metronome import MetronomeEmulator
from worker.settings import load_settings
from worker.state.keys import Keys
from worker.state.server import RedisServer
from worker.state.store import LockBusy, SyncStore

HOLDER = """
import sys, time
from worker.state.store import SyncStore
store = SyncStore.from_url(sys.argv[1])
if sys.argv[2] == "poll":
    assert store.acquire_poll_lock(lease_s=1.0) is not None
    print("held", flush=True)
    time.sleep(600)
with store.account_lock("001LEASE", lease_s=1.0):
    print("held", flush=True)
    time.sleep(600)
"""


def poll_lock_taken(store: SyncStore) -> bool:
    lease = store.acquire_poll_lock()
    if lease is None:
        return True
    store.release_poll_lock(lease)
    return False


def account_lock_taken(store: SyncStore) -> bool:
    try:
        with store.account_lock("001LEASE"):
            return False
    except LockBusy:
        return True


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(tmp_path / "redis").start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("lock", ["account", "poll"])
def test_a_killed_holder_frees_the_lock_within_one_lease(redis_url: str, lock: str) -> None:
    taken = account_lock_taken if lock == "account" else poll_lock_taken
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, lock], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        store = SyncStore.from_url(redis_url)
        # Alive, the holder renews: three leases later the lock is still taken.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert taken(store)
            time.sleep(0.2)  # pacing the probe, not synchronising with the holder
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        killed_at = time.monotonic()
        while taken(store):
            assert time.monotonic() - killed_at < 2.0, "the dead holder's lease did not run out"
            time.sleep(0.05)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)


def test_waiting_for_a_busy_account_does_not_use_up_the_retry_budget() -> None:
    with MetronomeEmulator(token=TOKEN) as emulator:
        settings = load_settings(
            metronome_bearer_token=TOKEN,
            metronome_base_url=emulator.url,
            retry_immediately=True,
            max_task_retries=2,
        )
        store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("lease"))
        ctx = WorkerContext(settings=settings, store=store, mapping=load_default_mapping())
        try:
            with store.account_lock(ACCOUNT):
                waits = [
                    run_sync(ctx, ACCOUNT, record(), task_id="busy", retries=n) for n in range(6)
                ]
            # Busy six times, three times the retry budget: each a wait, none a dead letter.
            assert all(isinstance(w, Retry) and "another task" in w.reason for w in waits)
            assert store.dead_letters() == []
            done = run_sync(ctx, ACCOUNT, record(), task_id="busy", retries=6)
        finally:
            ctx.close()
    assert isinstance(done, Done) and done.outcome == "created"


class LoadingStore(SyncStore):
    """Redis answering "LOADING" (restarted, replaying its AOF) when the sync records what it
    did (or when the engine reads the idempotency generation again)."""

    def current(self, account_id: str) -> int:
        raise redis.BusyLoadingError("Redis is loading the dataset in memory")

    def finish_sync(self, account_id: str, **_: Any) -> None:
        raise redis.BusyLoadingError("Redis is loading the dataset in memory")


def test_redis_still_loading_mid_sync_is_retried_never_dead_lettered() -> None:
    """Chaos run, seed 2: two closes were dead-lettered as BusyLoadingError (lost)."""
    with MetronomeEmulator(token=TOKEN) as emulator:
        settings = load_settings(
            metronome_bearer_token=TOKEN, metronome_base_url=emulator.url, retry_immediately=True
        )
        store = LoadingStore(fakeredis.FakeRedis(decode_responses=True), Keys("loading"))
        ctx = WorkerContext(settings=settings, store=store, mapping=load_default_mapping())
        try:
            with pytest.raises(redis.BusyLoadingError):
                run_sync(ctx, ACCOUNT, record(), task_id="loading")
            assert store.dead_letters() == []
        finally:
            ctx.close()
