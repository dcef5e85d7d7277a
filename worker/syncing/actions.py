"""Where a sync's failure values become effects: the dead letter, the parking entry, the lock
wait counted -- and the Done or Retry the task then answers with (worker/wiring.py turns
those into Celery's result or retry).

worker/syncing/failures.py decides which failure an exception is; this module writes it. The
value is settled where it is made (the steps and ``converge`` call :func:`settle` at once),
not later by the task, because the order of effects is part of the behaviour:

- A failure met while converging is settled inside the Metronome breaker's probe context
  (worker/outages/metronome.py ``probing``): a probe that reported nothing gives its turn back
  when the context ends, so settling after it would let the next probe start -- and a drain
  replay the parking -- before this sync is parked or dead-lettered.
- A parked sync's replay leaves the parking once its run ends (tasks/sync.py
  ``_leave_parking``): the parking entry or dead letter must be written before that.
- ``validate`` dead-letters with the account id it has just normalised, which only the step's
  own run carries.
"""

from __future__ import annotations

import logging
import random
import time

from worker.metronome.errors import TokenRefusedError
from worker.syncing.outcomes import (
    LOCK_BUSY_COUNTDOWN_S,
    MAX_LOCK_WAITS,
    DeadLetter,
    Done,
    Failure,
    LockWait,
    Park,
    Retry,
    SyncRun,
    snapshot_hash,
)

#: The sync's log lines keep the logger name operators filter on.
log = logging.getLogger("tasks.sync")


def settle(run: SyncRun, outcome: Done | Retry | Failure) -> Done | Retry:
    """Write a failure's effects; the Done or Retry the sync ends with."""
    if isinstance(outcome, DeadLetter):
        return dead_letter(run, outcome)
    if isinstance(outcome, Park):
        return park(run, outcome)
    if isinstance(outcome, LockWait):
        return wait_for_lock(run, outcome)
    return outcome


def dead_letter(run: SyncRun, letter: DeadLetter) -> Done:
    """The "needs attention" item and the refused snapshot's hash (when asked), then the dead
    letter with its snapshot, counted and logged."""
    store = run.ctx.store
    if letter.attention is not None:
        event, details = letter.attention
        store.attention.record(
            event,
            record_id=run.account,
            account_id=run.account,
            details=details,
            task_id=run.task_id,
            trigger=run.reason,
        )
    if letter.refuse:
        store.remember_dead_hash(run.account, snapshot_hash(run.record))
    snapshot = run.record if letter.snapshot is None else letter.snapshot
    snapshot_dict = snapshot if isinstance(snapshot, dict) else {"raw": repr(snapshot)[:2000]}
    store.dead_letter(
        account_id=run.account,
        kind=letter.kind,
        reason=letter.reason,
        task_id=run.task_id,
        snapshot=snapshot_dict,
        trigger=run.reason,
    )
    store.count_outcome("dead_lettered")
    log.warning(
        "dead-lettered account %s (%s): %s",
        run.account,
        letter.kind,
        letter.reason,
        extra={"account_id": run.account, "task_id": run.task_id},
    )
    return Done("dead_lettered")


def park(run: SyncRun, parked: Park) -> Done:
    """The sync waits in the parking (worker/outages/parking.py) and the drain sends it again;
    a dead letter only once it has failed for a whole day -- never for a refused token: a
    person fixing METRONOME_BEARER_TOKEN must not have to redrive every account."""
    exc = parked.cause
    parking = run.ctx.parking
    item = parking.park(
        run.account,
        run.record,
        reason=str(exc),
        force=run.force,
        sync_reason=run.reason,
        task_id=run.task_id,
    )
    token_refused = isinstance(exc, TokenRefusedError)
    if parking.expired(item) and not token_refused:
        parking.remove(run.account)
        hours = item.age_s() / 3600
        why = f"still failing after {hours:.1f} h parked ({item.attempts} attempts): {exc}"
        return dead_letter(run, DeadLetter("transient_exhausted", why, item.record))
    run.ctx.store.count_outcome("parked")
    if token_refused:
        # The refusal itself is logged once per process (worker/outages/token.py), with the
        # setting to fix; a line per account would only repeat it.
        log.info(
            "parked account %s until Metronome accepts the token (attempt %d)",
            run.account,
            item.attempts,
            extra={"account_id": run.account, "task_id": run.task_id},
        )
        return Done("parked")
    log.warning(
        "parked account %s (attempt %d, next try in %.0f s, parked since %s): %s",
        run.account,
        item.attempts,
        max(0.0, (item.next_at or 0.0) - time.time()),
        item.summary()["since"],
        exc,
        extra={"account_id": run.account, "task_id": run.task_id},
    )
    return Done("parked")


def wait_for_lock(run: SyncRun, wait: LockWait) -> Done | Retry:
    """Another sync of this account runs, or a killed one's lease has not run out yet: wait
    for the lease, counted apart from the retry budget (a close must not dead-letter only
    because its account was busy); give up after MAX_LOCK_WAITS."""
    ctx = run.ctx
    if ctx.store.count_lock_wait(run.task_id) > MAX_LOCK_WAITS:
        why = f"gave up waiting for the account lock: {wait.reason}"
        return dead_letter(run, DeadLetter("lock_busy", why))
    remaining = ctx.store.lock_remaining_s(wait.owner)
    cap = ctx.settings.visibility_timeout_s / 4
    jitter = random.uniform(0, LOCK_BUSY_COUNTDOWN_S)  # noqa: S311 - jitter, not crypto
    countdown = (
        0.0
        if ctx.settings.retry_immediately
        else min(cap, max(LOCK_BUSY_COUNTDOWN_S, remaining) + jitter)
    )
    return Retry(countdown, wait.reason, failure=False)
