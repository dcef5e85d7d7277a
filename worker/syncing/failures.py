"""How a sync ends when it cannot converge: dead letter, refusal, parking, retry, lock wait.

Each function writes what its outcome needs (the dead letter, the parking entry, the
counters) and answers with the value the caller acts on; :func:`failure_outcome` is the one
place that says which exception ends a sync which way.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import replace
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from worker.metronome.errors import (
    PermanentError,
    RateLimitedError,
    TransientError,
    UnresolvableConflictError,
)
from worker.outages.metronome import BreakerOpenError
from worker.queue.publish import request_drain
from worker.state.store import LockBusy
from worker.syncing.outcomes import (
    LOCK_BUSY_COUNTDOWN_S,
    MAX_LOCK_WAITS,
    Done,
    Retry,
    SyncRun,
    backoff,
    snapshot_hash,
)

#: The sync's log lines keep the logger name operators filter on.
log = logging.getLogger("tasks.sync")


def dead(run: SyncRun, kind: str, why: str, snapshot: Any = None) -> Done:
    """A dead letter with the snapshot (the record itself unless told otherwise)."""
    snapshot = run.record if snapshot is None else snapshot
    snapshot_dict = snapshot if isinstance(snapshot, dict) else {"raw": repr(snapshot)[:2000]}
    store = run.ctx.store
    store.dead_letter(
        account_id=run.account,
        kind=kind,
        reason=why,
        task_id=run.task_id,
        snapshot=snapshot_dict,
        trigger=run.reason,
    )
    store.count_outcome("dead_lettered")
    log.warning(
        "dead-lettered account %s (%s): %s",
        run.account,
        kind,
        why,
        extra={"account_id": run.account, "task_id": run.task_id},
    )
    return Done("dead_lettered")


def refused(run: SyncRun, why: str) -> Done:
    """Metronome refuses this snapshot as it stands: retrying it on every poll that re-reads
    it (the overlap window) would only repeat the refusal. A change, a re-sync or a redrive
    (force) sends it again."""
    run.ctx.store.remember_dead_hash(run.account, snapshot_hash(run.record))
    return dead(run, "permanent", why)


def park(run: SyncRun, exc: Exception) -> Done:
    """Transient, not dead: the sync waits in the parking (worker/outages/parking.py) and the
    drain sends it again; a dead letter only once it has failed for a whole day."""
    parking = run.ctx.parking
    item = parking.park(
        run.account,
        run.record,
        reason=str(exc),
        force=run.force,
        sync_reason=run.reason,
        task_id=run.task_id,
    )
    if parking.expired(item):
        parking.remove(run.account)
        hours = item.age_s() / 3600
        return dead(
            run,
            "transient_exhausted",
            f"still failing after {hours:.1f} h parked ({item.attempts} attempts): {exc}",
            item.record,
        )
    run.ctx.store.count_outcome("parked")
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


def transient(
    run: SyncRun, exc: Exception, floor: float = 0.0, *, metronome: bool = True
) -> Done | Retry:
    """A transient failure: a quick retry while the breaker is closed and the budget lasts (a
    blip: a parked sync's replay gets them too, so a stray 5xx after recovery does not send
    it back for a whole backoff), otherwise parked. A Metronome failure also counts toward
    the breaker."""
    ctx = run.ctx
    breaker_open = (
        metronome and ctx.metronome_breaker.failed(str(exc), account=run.account) != "counted"
    )
    # Retries spent waiting for the account lock are not failures (see lock_busy).
    failures = run.retries - ctx.store.lock_waits(run.task_id) if run.retries else 0
    if breaker_open or failures >= ctx.settings.max_task_retries:
        return park(run, exc)
    wait = backoff(
        failures, ctx.settings.retry_immediately, floor, ctx.settings.visibility_timeout_s
    )
    return Retry(wait, str(exc))


def succeeded(run: SyncRun, calls: int) -> None:
    """Metronome answered this sync's calls: the breaker learns it (a probe closes it, and
    the parked syncs are sent at once)."""
    if calls > 0 and run.ctx.metronome_breaker.succeeded():
        request_drain(everything=True)


def lock_busy(run: SyncRun, exc: LockBusy, owner: str) -> Done | Retry:
    """Another sync of this account runs, or a killed one's lease has not run out yet: wait
    for the lease, do not burn the retry budget (a close must not dead-letter only because
    its account was busy)."""
    ctx = run.ctx
    if ctx.store.count_lock_wait(run.task_id) > MAX_LOCK_WAITS:
        return dead(run, "lock_busy", f"gave up waiting for the account lock: {exc}")
    remaining = ctx.store.lock_remaining_s(owner)
    cap = ctx.settings.visibility_timeout_s / 4
    jitter = random.uniform(0, LOCK_BUSY_COUNTDOWN_S)  # noqa: S311 - jitter, not crypto
    wait = (
        0.0
        if ctx.settings.retry_immediately
        else min(cap, max(LOCK_BUSY_COUNTDOWN_S, remaining) + jitter)
    )
    return Retry(wait, str(exc), failure=False)


def failure_outcome(run: SyncRun, exc: Exception, owner: str) -> Done | Retry:
    """What an exception raised while converging means for the sync. Redis errors never
    reach here: they say nothing about the record, the task retries them."""
    if isinstance(exc, LockBusy):
        return lock_busy(run, exc, owner)
    if isinstance(exc, BreakerOpenError):
        # The breaker opened while this sync ran: it stopped at its next call. Not one more
        # failure (the failures that opened it were counted).
        return park(run, exc)
    if isinstance(exc, RateLimitedError):
        return transient(run, exc, exc.retry_after_s or 0.0)
    if isinstance(exc, TransientError):
        return transient(run, exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        late = transient(run, TransientError("soft time limit"), metronome=False)
        # A batch must stop here and hand its other accounts on: the hard limit is near.
        return replace(late, out_of_time=True) if isinstance(late, Retry) else late
    if isinstance(exc, UnresolvableConflictError):
        # An operator must choose between two customers: that is "needs attention" (with
        # what to do), and the record waits as a dead letter for the redrive after the fix.
        succeeded(run, 1)  # Metronome is up and answering
        run.ctx.store.attention.record(
            "customer_conflict",
            record_id=run.account,
            account_id=run.account,
            details={"customer_ids": list(exc.customer_ids), "conflict": str(exc)},
            task_id=run.task_id,
            trigger=run.reason,
        )
        return refused(run, str(exc))
    if isinstance(exc, PermanentError):
        succeeded(run, 1)  # refused for good: Metronome is up and answering
        return refused(run, str(exc))
    if isinstance(exc, json.JSONDecodeError):
        # A 200 whose body is cut short or is not JSON (a proxy's error page): the outcome is
        # unknown, like a dropped connection, so retry; the same Idempotency-Key replays it.
        return transient(run, TransientError(f"Metronome answered unreadable JSON: {exc}"))
    return dead(run, type(exc).__name__, str(exc))  # a conflict or a bug: never lose it
