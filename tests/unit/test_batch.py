"""Batch publishing and the batch runner's budget, against fakeredis and the Metronome emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from mappings import load_default_mapping
from tasks.batch import parse_items, run_batch
from tasks.publish import BATCH_SIZE, MIN_BATCHES, SyncItem, split_batches
from worker.context import WorkerContext
from worker.keys import Keys
from worker.metronome import UpsertEngine
from worker.salesforce.ids import normalize_salesforce_id
from worker.sandbox.metronome import MetronomeEmulator
from worker.settings import load_settings
from worker.store import SyncStore

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
    result = run_batch(ctx, items, task_id="late")
    assert [i for i, _countdown, _failure in result.retries] == items[:1]
    assert result.unstarted == items[1:]
    assert ctx.store.dead_letters() == []
