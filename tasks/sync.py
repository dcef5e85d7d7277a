"""``crmsync.sync_account``: one account's snapshot → the Metronome customer it should be.

The order of the steps is the product's promise:

1. validate the message (a message that is not ours dead-letters, it never crashes a worker);
2. count deliveries (a message that keeps killing its worker stops after MAX_DELIVERIES);
3. map (pure; a MappingError dead-letters at once with every problem listed);
4. compare the desired state's hash with the last one synced: equal → done, zero API calls;
5. take the per-account lock and let the upsert engine converge Metronome;
6. record hash, customer id and a ledger entry;
7. still under the lock, make the contract of each won deal that has none yet
   (worker/contracts/step.py: exactly once per opportunity, never an edit).

Each step is a function of worker/syncing/steps.py; a sync ends with a value (Done, or Retry
with its countdown, worker/syncing/outcomes.py) that the task turns into Celery's answer
(worker/wiring.py).

Step 3 also maps the record's won deals to contracts: a deal that cannot be mapped
dead-letters alone, a deal changed after its contract was made is "needs attention", and an
account whose customer and contracts are all as last synced costs zero API calls.

Transient failures (5xx, 429, no answer, a timeout) are never dead letters while they could
still clear: a few quick retries with Celery's countdown (exponential, full jitter, capped far
below the visibility timeout) for a blip, then the sync is *parked*
(worker/outages/parking.py) and the
drain (tasks/parked.py) sends it again, with a backoff capped at minutes, for a day. While
Metronome's circuit breaker is open a sync parks at once, without a call (step 4b). Permanent
failures dead-letter at once; a later sync of the account that succeeds resolves them
(in finish_sync's MULTI, worker/state/dead_letters.py).
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Task

from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
from worker.app import app
from worker.context import WorkerContext, get_context
from worker.queue.names import PARKED_REASON, SYNC_ACCOUNT
from worker.state.store import AccountState
from worker.syncing import steps
from worker.syncing.outcomes import MAX_DELIVERIES, Done, Retry, SyncRun, backoff, snapshot_hash
from worker.wiring import SYNC_TASK_OPTIONS, answer_sync, retry_while_redis_is_away

__all__ = [
    "MAX_DELIVERIES",
    "Done",
    "Retry",
    "backoff",
    "run_sync",
    "snapshot_hash",
    "sync_account",
]


def run_sync(
    ctx: WorkerContext,
    account_id: Any,
    record: Any,
    *,
    force: bool = False,
    reason: str = "poll",
    task_id: str = "direct",
    retries: int = 0,
    known_absent: bool = False,
    state: AccountState | None = None,
    delivery_counted: bool = False,
) -> Done | Retry:
    """One account's sync, every outcome a value: Done, or Retry with its countdown.

    ``state`` is the account's Redis state when the caller read it already (a batch reads
    all of its accounts' in one round trip); ``delivery_counted`` says the caller counted
    this delivery itself (a batch counts the batch's). ``reason="parked"`` marks the replay
    of a parked sync (tasks/parked.py): once it ends, it leaves the parking.
    """
    run = SyncRun(ctx, record, force=force, reason=reason, task_id=task_id, retries=retries)
    result = _steps(run, account_id, known_absent, state, delivery_counted)
    if reason == PARKED_REASON and isinstance(result, Done) and result.outcome != "parked":
        _leave_parking(ctx, account_id, record)
    return result


def _steps(
    run: SyncRun,
    account_id: Any,
    known_absent: bool,
    state: AccountState | None,
    delivery_counted: bool,
) -> Done | Retry:
    """The steps in their order; the first that answers ends the sync."""
    validated = steps.validate(run, account_id)
    if isinstance(validated, Done):
        return validated
    run = validated
    poisoned = steps.count_delivery(run, counted=delivery_counted)
    if poisoned is not None:
        return poisoned
    mapped = steps.map_record(run)
    if isinstance(mapped, Done):
        return mapped
    if state is None:
        state = run.ctx.store.account_state(run.account)
    unchanged = steps.dedupe(run, mapped, state)
    if unchanged is not None:
        return unchanged
    return steps.converge(
        run,
        mapped,
        unchanged=steps.customer_unchanged(run, mapped, state),
        known_absent=known_absent,
    )


def _leave_parking(ctx: WorkerContext, account_id: Any, record: Any) -> None:
    """A parked sync's replay ended (synced, in sync, or a dead letter): it leaves the
    parking, unless a newer snapshot of the account was parked meanwhile."""
    try:
        account = normalize_salesforce_id(str(account_id))
    except InvalidSalesforceId:
        return
    if isinstance(record, dict):
        ctx.parking.finish(account, record)


@app.task(name=SYNC_ACCOUNT, **SYNC_TASK_OPTIONS)
def sync_account(
    self: Task,
    account_id: str,
    record: dict[str, Any],
    *,
    force: bool = False,
    reason: str = "poll",
    known_absent: bool = False,
) -> dict[str, Any]:
    """Sync one account from the record snapshot the poll (or a re-sync) read.

    Returns the outcome (also what Flower shows and what the metrics count); results are not
    stored in Redis (``task_ignore_result``).

    Redis unreachable mid-sync is retried, not failed (retry_while_redis_is_away).
    """
    try:
        result = run_sync(
            get_context(),
            account_id,
            record,
            force=force,
            reason=reason,
            task_id=str(self.request.id),
            retries=int(self.request.retries),
            known_absent=known_absent,
        )
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise retry_while_redis_is_away(self, f"sync of {account_id}", exc) from None
    return answer_sync(self, result)
