"""How a sync ends when it cannot converge: which failure an exception is.

:func:`failure_outcome` is the one place that says which exception ends a sync which way. It
answers with a value -- Done, Retry, or a failure (DeadLetter, Park, LockWait) whose effects
worker/syncing/actions.py writes -- and writes nothing of the failure itself. What it does
report in place is the Metronome circuit breaker's part, because its answer is the decision:
a transient failure counted toward the breaker parks the sync when it opened the breaker, and
a refusal tells the breaker Metronome is up (a probe must report inside its probe context).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from worker.metronome.errors import (
    PermanentError,
    RateLimitedError,
    TokenRefusedError,
    TransientError,
    UnresolvableConflictError,
)
from worker.outages.metronome import BreakerOpenError
from worker.queue.publish import request_drain
from worker.state.store import LockBusy
from worker.syncing.outcomes import (
    DeadLetter,
    Done,
    Failure,
    LockWait,
    Park,
    Retry,
    SyncRun,
    backoff,
)


def transient(
    run: SyncRun, exc: Exception, floor: float = 0.0, *, metronome: bool = True
) -> Park | Retry:
    """A transient failure: a quick retry while the breaker is closed and the budget lasts (a
    blip: a parked sync's replay gets them too, so a stray 5xx after recovery does not send
    it back for a whole backoff), otherwise parked. A Metronome failure also counts toward
    the breaker."""
    ctx = run.ctx
    breaker_open = (
        metronome and ctx.metronome_breaker.failed(str(exc), account=run.account) != "counted"
    )
    # Retries spent waiting for the account lock are not failures (actions.wait_for_lock).
    failures = run.retries - ctx.store.lock_waits(run.task_id) if run.retries else 0
    if breaker_open or failures >= ctx.settings.max_task_retries:
        return Park(exc)
    wait = backoff(
        failures, ctx.settings.retry_immediately, floor, ctx.settings.visibility_timeout_s
    )
    return Retry(wait, str(exc))


def succeeded(run: SyncRun, calls: int) -> None:
    """Metronome answered this sync's calls: the breaker and the token gate learn it (a probe
    closes the breaker or ends a token refusal, and the parked syncs are sent at once)."""
    if calls <= 0:
        return
    accepted = run.ctx.metronome_token.accepted()
    if accepted:
        # Due now: beat's next drain sends them all even if the drain asked for below is lost.
        run.ctx.parking.make_due()
    if run.ctx.metronome_breaker.succeeded() or accepted:
        request_drain(everything=True)


def failure_outcome(run: SyncRun, exc: Exception, owner: str) -> Done | Retry | Failure:
    """What an exception raised while converging means for the sync. Redis errors never
    reach here: they say nothing about the record, the task retries them."""
    if isinstance(exc, LockBusy):
        return LockWait(owner, str(exc))
    if isinstance(exc, TokenRefusedError):
        # The deployment's token, not this record: park (the gateway shared the refusal, so
        # the other syncs park without a call); neither a breaker failure nor a dead letter.
        if exc.sent:  # the answer itself: say what to fix in the parked sync's reason too
            why = f"{exc.message}: check METRONOME_BEARER_TOKEN; parked until it is accepted"
            return Park(TokenRefusedError(why, status=exc.status))
        return Park(exc)
    if isinstance(exc, BreakerOpenError):
        # The breaker opened while this sync ran: it stopped at its next call. Not one more
        # failure (the failures that opened it were counted).
        return Park(exc)
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
        details = {"customer_ids": list(exc.customer_ids), "conflict": str(exc)}
        return refused(str(exc), attention=("customer_conflict", details))
    if isinstance(exc, PermanentError):
        succeeded(run, 1)  # refused for good: Metronome is up and answering
        return refused(str(exc))
    if isinstance(exc, json.JSONDecodeError):
        # A 200 whose body is cut short or is not JSON (a proxy's error page): the outcome is
        # unknown, like a dropped connection, so retry; the same Idempotency-Key replays it.
        return transient(run, TransientError(f"Metronome answered unreadable JSON: {exc}"))
    return DeadLetter(type(exc).__name__, str(exc))  # a conflict or a bug: never lose it


def refused(why: str, *, attention: tuple[str, dict[str, Any]] | None = None) -> DeadLetter:
    """Metronome refuses this snapshot as it stands: retrying it on every poll that re-reads
    it (the overlap window) would only repeat the refusal. A change, a re-sync or a redrive
    (force) sends it again."""
    return DeadLetter("permanent", why, refuse=True, attention=attention)
