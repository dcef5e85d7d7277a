"""Batch publishing and the batch runner's budget, against fakeredis and the Metronome emulator."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from mappings import load_default_mapping
from mappings.ids import normalize_salesforce_id
from tasks import inflight
from tasks.batch import BATCH_TIME_BUDGET_S, batch_budget_s, parse_items, run_batch
from worker.context import WorkerContext
from worker.metronome import UpsertEngine
from worker.queue.publish import BATCH_SIZE, MIN_BATCHES, SyncItem, split_batches
from worker.sandbox.metronome import MetronomeEmulator
from worker.settings import load_settings
from worker.state.keys import Keys
from worker.state.store import SyncStore

TOKEN = "batch-unit-token"


def item(n: int) -> SyncItem:
    account = normalize_salesforce_id(f"001C000000000{n:02d}")
    record = {
        "Id": normalize_salesforce_id(f"006C000000000{n:02d}"),
        "AccountId": account,
        "Account": {"Id": account, "Name": f"Unit {n}", "Billing_Email__c": f"u{n}@x.example"},
    }
    return account, record, True


@pytest.fixture
def ctx() -> Iterator[WorkerContext]:
    with MetronomeEmulator(token=TOKEN) as emulator:
        settings = load_settings(
            metronome_bearer_token=TOKEN, metronome_base_url=emulator.url, retry_immediately=True
        )
        store = SyncStore(fakeredis.FakeRedis(decode_responses=True), Keys("batch"))
        context = WorkerContext(settings=settings, store=store, mapping=load_default_mapping())
        try:
            yield context
        finally:
            context.close()


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (0, []),
        (1, [1]),
        (3, [1, 1, 1]),
        (20, [3, 3, 3, 3, 2, 2, 2, 2]),
        (500, [BATCH_SIZE] * 10),
        (1001, [48] * 14 + [47] * 7),
    ],
)
def test_a_few_closes_spread_over_workers_and_a_backfill_fills_batches(
    count: int, sizes: list[int]
) -> None:
    items = [item(n % 100) for n in range(count)]
    batches = split_batches(items)
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == items  # nothing lost, order kept
    assert len(batches) >= min(count, MIN_BATCHES)
    assert all(len(b) <= BATCH_SIZE for b in batches)


def test_malformed_items_are_set_apart_from_good_ones() -> None:
    good = list(item(1))
    raw: list[Any] = [good, ["only-an-id"], 42, [good[0], "not a record", True], None]
    parsed, bad = parse_items(raw)
    assert parsed == [item(1)]
    assert bad == raw[1:]
    assert parse_items("not a list") == ([], ["not a list"])


def test_a_spent_time_budget_hands_the_unstarted_accounts_on(ctx: WorkerContext) -> None:
    items = [item(n) for n in range(1, 5)]
    result = run_batch(ctx, items, task_id="budget", budget_s=0.0)
    # The first account always runs (a batch always makes progress); the rest go on.
    assert result.outcomes == {"created": 1}
    assert result.unstarted == items[1:]
    again = run_batch(ctx, items, task_id="budget-2")
    assert again.outcomes == {"unchanged": 1, "created": 3}
    assert again.unstarted == [] and again.retries == []


def test_a_batch_hands_on_well_before_the_broker_would_deliver_it_again() -> None:
    # The default visibility timeout (900 s) leaves the 60 s budget as it is; a short one
    # (chaos runs 30 s) shortens it to a quarter, so no batch outlives its message's lease.
    assert batch_budget_s(900) == BATCH_TIME_BUDGET_S
    assert batch_budget_s(120) == 30.0
    assert batch_budget_s(30) == 7.5


def test_a_busy_account_is_returned_for_a_retry_that_is_not_a_failure(
    ctx: WorkerContext,
) -> None:
    items = [item(n) for n in range(1, 4)]
    with ctx.store.account_lock(items[1][0]):
        result = run_batch(ctx, items, task_id="busy")
    assert result.outcomes == {"created": 2, "retried": 1}
    assert [(i, failure) for i, _countdown, failure in result.retries] == [(items[1], False)]


class ExplodingMapping:
    """The real mapping, except that one account's record makes it raise a bug's error."""

    def __init__(self, account: str) -> None:
        self.real = load_default_mapping()
        self.account = account
        self.contract = None  # no contract step: the bug is in the customer mapping

    def map_record(self, record: dict[str, Any]) -> Any:
        if record.get("AccountId") == self.account:
            raise RuntimeError("a bug that only this record triggers")
        return self.real.map_record(record)


def test_a_bug_for_one_record_dead_letters_it_and_the_batch_goes_on(ctx: WorkerContext) -> None:
    items = [item(n) for n in range(1, 4)]
    ctx.mapping = ExplodingMapping(items[1][0])  # type: ignore[assignment]
    result = run_batch(ctx, items, task_id="bug")
    assert result.outcomes == {"created": 2, "dead_lettered": 1}
    [letter] = ctx.store.dead_letters()
    assert letter.account_id == items[1][0] and letter.kind == "task_failed"
    assert "a bug that only this record triggers" in letter.reason


class OutOfTimeEngine(UpsertEngine):
    """Celery's soft time limit strikes during the first account's Metronome calls."""

    def sync(self, desired: Any, **kwargs: Any) -> Any:
        raise SoftTimeLimitExceeded()


def test_the_soft_time_limit_stops_the_batch_and_hands_the_rest_on(ctx: WorkerContext) -> None:
    items = [item(n) for n in range(1, 4)]
    ctx._engine = OutOfTimeEngine(ctx.gateway, ctx.store)
    result = run_batch(ctx, items, task_id="late", threads=1)
    assert [i for i, _countdown, _failure in result.retries] == items[:1]
    assert result.unstarted == items[1:]
    assert ctx.store.dead_letters() == []


def test_on_many_threads_every_account_is_retried_or_handed_on(ctx: WorkerContext) -> None:
    items = [item(n) for n in range(1, 9)]
    ctx._engine = OutOfTimeEngine(ctx.gateway, ctx.store)
    result = run_batch(ctx, items, task_id="late-threads", threads=4)
    retried = [i for i, _countdown, _failure in result.retries]
    # Those already running when the first hit the limit retry; none is lost or doubled.
    assert retried and sorted(retried + result.unstarted) == sorted(items)
    assert ctx.store.dead_letters() == []


class MeetingEngine(UpsertEngine):
    """Every sync waits until ``parties`` syncs are inside the engine at the same time."""

    def __init__(self, *args: Any, parties: int) -> None:
        super().__init__(*args)
        self.meeting = threading.Barrier(parties)

    def sync(self, desired: Any, **kwargs: Any) -> Any:
        self.meeting.wait(timeout=60)  # BrokenBarrierError (a failure) if they never meet
        return super().sync(desired, **kwargs)


def test_a_batch_keeps_its_threads_worth_of_syncs_in_flight(ctx: WorkerContext) -> None:
    items = [item(n) for n in range(1, 7)]
    ctx._engine = MeetingEngine(ctx.gateway, ctx.store, parties=3)
    ctx._engine.bootstrap()
    result = run_batch(ctx, items, task_id="together", threads=3)
    assert result.outcomes == {"created": 6}
    assert result.retries == [] and result.unstarted == []


class StuckEngine(UpsertEngine):
    """The first sync signals Celery's soft time limit to the main thread, as Celery's
    signal handler would, and stays stuck until the test lets it go."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.release = threading.Event()
        self.first = threading.Lock()

    def sync(self, desired: Any, **kwargs: Any) -> Any:
        if self.first.acquire(blocking=False):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
            self.release.wait(timeout=60)
        return super().sync(desired, **kwargs)


def test_the_soft_limit_in_the_waiting_thread_hands_on_unstarted_and_stuck_syncs(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def soft_limit(_signum: int, _frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(inflight, "SOFT_LIMIT_GRACE_S", 0.2)
    previous = signal.signal(signal.SIGUSR1, soft_limit)
    engine = StuckEngine(ctx.gateway, ctx.store)
    engine.bootstrap()
    ctx._engine = engine
    items = [item(n) for n in range(1, 11)]
    try:
        result = run_batch(ctx, items, task_id="stuck", threads=2)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        engine.release.set()
    created = result.outcomes.get("created", 0)
    # The stuck sync is handed on with the unstarted; every account is accounted for once.
    assert len(result.unstarted) >= 1 and result.retries == []
    assert created + len(result.unstarted) == len(items)
    again = run_batch(ctx, result.unstarted, task_id="stuck-2")
    assert set(again.outcomes) <= {"created", "unchanged", "retried"}
