"""``crmsync.sync_batch``: many accounts' syncs in one Celery message.

Each account still goes through :func:`tasks.sync.run_sync` (same order of steps, same lock,
same dead letters, same ledger line); the batch only shares what is per *message*: the
delivery count, one read of every account's Redis state, Celery's receive/events/ack. Its
accounts run CRMSYNC_SYNC_THREADS at a time (:mod:`tasks.inflight`: enough Metronome calls in
flight to use the allowed rate at real-world latency).

What must not be shared leaves the batch as its own ``crmsync.sync_account`` message:

- an account whose sync must run again later (a 429, a 5xx, a busy lock) is re-published
  alone with its countdown, so one slow account never holds back the other 49 nor makes them
  run twice;
- a batch delivered a second time (its worker was killed mid-batch, or lost its connection)
  is split into single messages at once: if one record kills workers, only its own message
  reaches MAX_DELIVERIES and dead-letters, the others sync (the accounts the first delivery
  finished are dedupe hits, free);
- a batch that has run for BATCH_TIME_BUDGET_S (or a quarter of the visibility timeout, if
  shorter) hands its unstarted accounts to a new batch, far inside the soft time limit and
  the visibility timeout even when Metronome is slow (and at once if the soft limit
  strikes anyway, with the syncs still running after a grace: tasks.inflight);
- a record that makes our code raise something unexpected (a bug) is dead-lettered with the
  error, as a failed single-account task would be, and the batch goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
from tasks.inflight import run_in_flight
from tasks.sync import run_sync
from worker.app import app, declare_queue
from worker.context import WorkerContext, get_context
from worker.queue.names import SYNC_BATCH
from worker.queue.publish import SyncItem, send_batch, send_sync
from worker.syncing.outcomes import Done, Retry
from worker.wiring import SYNC_TASK_OPTIONS, dead_letter_message, retry_while_redis_is_away

log = logging.getLogger(__name__)

#: Seconds a batch may run before handing the rest on: a quarter of the 240 s soft limit.
BATCH_TIME_BUDGET_S = 60.0


def batch_budget_s(visibility_timeout_s: float) -> float:
    """BATCH_TIME_BUDGET_S, or a quarter of the broker's visibility timeout when that is
    shorter: Redis hands an unacknowledged message to another worker once it is older than
    the timeout, even while its first worker still runs it, and the batch is then split and
    synced twice. (The chaos run, with a 30 s timeout: 13 of its 60 s batches came back
    split, 631 single syncs queued behind the outage's drain.)"""
    return min(BATCH_TIME_BUDGET_S, visibility_timeout_s / 4)


@dataclass(slots=True)
class BatchResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Accounts to run again alone: (item, countdown, counts as a failed attempt).
    retries: list[tuple[SyncItem, float, bool]] = field(default_factory=list)
    #: Accounts not started (time budget spent): they go on in a new batch.
    unstarted: list[SyncItem] = field(default_factory=list)
    calls: int = 0
    contracts_created: int = 0


def parse_items(raw: Any) -> tuple[list[SyncItem], list[Any]]:
    """The well-formed items of a batch message, and the rest (to dead-letter)."""
    good: list[SyncItem] = []
    bad: list[Any] = []
    for item in raw if isinstance(raw, list) else [raw]:
        if (
            isinstance(item, list | tuple)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], dict)
            and isinstance(item[2], bool)
        ):
            good.append((item[0], item[1], item[2]))
        else:
            bad.append(item)
    return good, bad


def run_batch(
    ctx: WorkerContext,
    items: Sequence[SyncItem],
    *,
    force: bool = False,
    reason: str = "poll",
    task_id: str = "direct",
    budget_s: float | None = None,
    threads: int | None = None,
) -> BatchResult:
    """Sync ``items``, ``threads`` at a time (CRMSYNC_SYNC_THREADS by default); never raises
    for one account's trouble.

    Redis errors do propagate (the task retries the whole batch; finished accounts are
    dedupe hits then). The outcome lists are in the items' order, whatever order the
    threads finished in.
    """
    result = BatchResult()
    if budget_s is None:
        budget_s = batch_budget_s(ctx.settings.visibility_timeout_s)
    deadline = time.monotonic() + budget_s
    ids = [_normalized(account_id) for account_id, _record, _absent in items]
    states = ctx.store.account_states(i for i in ids if i is not None)
    lock = threading.Lock()
    retries: dict[int, tuple[SyncItem, float, bool]] = {}

    def sync_one(index: int) -> bool:
        """One account; True when the batch must start no other (the soft limit struck)."""
        item = items[index]
        account_id, record, known_absent = item
        normalized = ids[index]
        state = states.get(normalized) if normalized is not None else None
        try:
            outcome = run_sync(
                ctx,
                account_id,
                record,
                force=force,
                reason=reason,
                task_id=f"{task_id}#{index}",
                known_absent=known_absent,
                state=state,
                delivery_counted=True,
            )
        except (redis.RedisError, SoftTimeLimitExceeded):
            raise  # the whole batch retries (see the task)
        except Exception as exc:  # a bug for this record: never take the batch down with it
            log.exception("sync of %s failed in batch %s", account_id, task_id)
            ctx.store.dead_letter(
                account_id=account_id[:40],
                kind="task_failed",
                reason=f"{type(exc).__name__}: {exc}"[:2000],
                task_id=f"{task_id}#{index}",
                snapshot=record,  # the record itself, so `crmsync dead-letters redrive` works
            )
            ctx.store.count_outcome("dead_lettered")
            with lock:
                result.outcomes["dead_lettered"] += 1
            return False
        with lock:
            if isinstance(outcome, Retry):
                retries[index] = (item, outcome.countdown, outcome.failure)
                result.outcomes["retried"] += 1
                return outcome.out_of_time
            assert isinstance(outcome, Done)  # noqa: S101 - run_sync returns one of the two
            result.outcomes[outcome.outcome] += 1
            result.calls += outcome.calls
            result.contracts_created += outcome.contracts_created
        return False

    report = run_in_flight(
        len(items),
        sync_one,
        threads=threads or ctx.settings.sync_threads,
        deadline=deadline,
        name=f"batch-{task_id[:8]}",
    )
    result.retries = [retries[index] for index in sorted(retries)]
    result.unstarted = [items[index] for index in sorted(report.unstarted + report.abandoned)]
    return result


def _normalized(account_id: str) -> str | None:
    """The 18-character id, or None for one run_sync will dead-letter with the reason."""
    try:
        return normalize_salesforce_id(account_id)
    except InvalidSalesforceId:
        return None


def _split(items: Sequence[SyncItem], *, force: bool, reason: str) -> None:
    for account_id, record, known_absent in items:
        send_sync(account_id, record, force=force, reason=reason, known_absent=known_absent)


@app.task(name=SYNC_BATCH, **SYNC_TASK_OPTIONS)
def sync_batch(
    self: Task, items: Any, *, force: bool = False, reason: str = "poll"
) -> dict[str, Any]:
    """Sync the accounts of one poll (or re-sync) batch; returns the outcome counts."""
    ctx = get_context()
    task_id = str(self.request.id)
    good, bad = parse_items(items)
    for raw in bad:
        dead_letter_message(
            "malformed_message",
            "batch item is not [account id, record, known_absent]",
            raw[0] if isinstance(raw, list | tuple) and raw else None,
            raw,
            task_id,
        )
    try:
        deliveries = ctx.store.count_delivery(task_id, int(self.request.retries))
        if deliveries > 1:
            # Redelivered: the last delivery died mid-batch. Split it so that a record that
            # kills its worker is isolated (and dead-letters alone after MAX_DELIVERIES).
            log.warning(
                "batch %s delivered %d times: split into %d syncs", task_id, deliveries, len(good)
            )
            declare_queue()
            _split(good, force=force, reason=reason)
            return {"split": len(good), "outcomes": {"dead_lettered": len(bad)}}
        result = run_batch(ctx, good, force=force, reason=reason, task_id=task_id)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise retry_while_redis_is_away(self, f"batch {task_id}", exc) from None
    except SoftTimeLimitExceeded:
        # Outside an account's Metronome calls (those turn it into that account's retry):
        # the batch as a whole retries; what it finished is a dedupe hit next time.
        raise self.retry(countdown=0, exc=None) from None
    if result.retries or result.unstarted:
        # kombu drops a publish silently when Redis lost its routing keys (FLUSHALL, a restart
        # from nothing): the accounts leaving this batch would vanish. Chaos run, seed 32:
        # a split batch of 38 accounts lost this way.
        declare_queue()
    for (account_id, record, _absent), countdown, failure in result.retries:
        # Alone now, with its countdown; the poll's "no customer" hint may be stale by then.
        send_sync(
            account_id,
            record,
            countdown=countdown,
            retries=1 if failure else 0,
            force=force,
            reason=reason,
        )
    if result.retries:
        ctx.store.count_outcome("retried", len(result.retries))
    if result.unstarted:
        send_batch(result.unstarted, force=force, reason=reason)
    outcomes = dict(result.outcomes)
    if bad:
        outcomes["dead_lettered"] = outcomes.get("dead_lettered", 0) + len(bad)
    return {
        "outcomes": outcomes,
        "calls": result.calls,
        "contracts_created": result.contracts_created,
        "retried": len(result.retries),
        "handed_on": len(result.unstarted),
    }
