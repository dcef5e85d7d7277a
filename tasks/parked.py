"""``crmsync.drain_parked``: parked syncs go back into the queue when they are due.

Beat sends it every CRMSYNC_POLL_INTERVAL_S (and a sync whose probe closed Metronome's breaker
sends one at once), so after an outage the parked syncs are on their way within a poll
interval. It never schedules anything ahead (no ETA, no countdown: the Redis broker hands a
message waiting past its visibility timeout out twice), it only
publishes what is due now, as ordinary ``crmsync.sync_batch`` messages whose syncs go through
the same steps, locks, Idempotency-Keys and rate governor as any other (``reason="parked"``).

- **Breaker closed:** the due parked syncs are sent; after each recovery (the breaker's
  ``closed_at`` newer than the last full drain) every parked sync is sent, due or not.
- **Breaker open:** nothing is sent but the probe, once one is due: the parked sync due
  soonest (its sync asks the breaker and is let through as the probe), or, with nothing parked, one
  cheap read (``gateway.ping``). Syncs parked longer than CRMSYNC_PARK_MAX_AGE_S while it
  stays open become dead letters (with the webhook's alert).
- One drain at a time (a lock); a sent sync stays in the parking until its replay ends. A
  replay whose worker was killed comes back from the broker; one lost for good (its message
  gone with Redis data) is sent again once its lease ran out and nothing is queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from worker.app import TASK_TIME_LIMIT_S, app, declare_queue
from worker.context import WorkerContext, get_context
from worker.metronome.errors import MetronomeError, TransientError
from worker.outages.breaker import iso
from worker.outages.parking import ParkedSync
from worker.queue.names import DRAIN, PARKED_REASON
from worker.queue.publish import send_batch, split_batches
from worker.state.keys import QUEUE

log = logging.getLogger(__name__)

#: The task name, stable for operators (``celery call crmsync.drain_parked``).
DRAIN_TASK = DRAIN
#: Parked syncs read per round trip, and sent per drain at most (the next drain sends more).
CLAIM_CHUNK = 500
DRAIN_MAX = 20_000

Publish = Callable[[Sequence[ParkedSync]], None]


def claim_lease_s(ctx: WorkerContext) -> float:
    """How long a sent parked sync whose replay has not ended is left alone before a drain
    (with the queue empty) sends it again: longer than a task may run (its hard time limit),
    so a replay still running is not sent twice, and at least twice the longest backoff. A
    second copy would be harmless anyway (a dedupe hit, or a wait on the account lock)."""
    return max(float(TASK_TIME_LIMIT_S), 2 * ctx.settings.park_backoff_max_s)


def publish_replays(items: Sequence[ParkedSync]) -> None:
    """The default publisher: ``crmsync.sync_batch`` messages, one per force flag and ≤ 50
    accounts (worker/queue/publish.py)."""
    declare_queue()
    for force in (False, True):
        chosen = [(i.account_id, i.record, False) for i in items if i.force is force]
        for batch in split_batches(chosen):
            send_batch(batch, force=force, reason=PARKED_REASON)


def run_drain(
    ctx: WorkerContext, *, everything: bool = False, publish: Publish | None = None
) -> dict[str, Any]:
    """Send what is due (see the module docstring); returns what was done."""
    store = ctx.store
    token = store.take_drain_lock()
    if token is None:
        return {"status": "skipped", "reason": "another drain is running"}
    try:
        return _drain(ctx, everything=everything, publish=publish or publish_replays)
    finally:
        store.release_drain_lock(token)


def _drain(ctx: WorkerContext, *, everything: bool, publish: Publish) -> dict[str, Any]:
    store, parking, breaker = ctx.store, ctx.parking, ctx.metronome_breaker
    lease = claim_lease_s(ctx)
    state = breaker.state()
    if state.is_open:
        expired = _expire(ctx)
        if not state.probe_due:
            return {"status": "breaker_open", "parked": parking.count(), "expired": expired}
        # The parked sync due soonest, not the oldest: a failed probe is parked again a
        # backoff later, so probes go round the parked syncs instead of retrying one account
        # that may fail for a reason of its own.
        first = parking.next_due_account()
        item = parking.claim_account(first, lease_s=lease) if first is not None else None
        if item is not None:
            publish([item])
            log.info("drain: parked sync of %s sent as the probe", item.account_id)
            return {"status": "probe", "account_id": item.account_id, "expired": expired}
        probed = _read_probe(ctx)
        if probed != "closed":
            return {"status": "probe", "read": probed, "expired": expired}
        state = breaker.state()
    marker = store.drained_all_at()
    recovered = state.closed_at_ms is not None and (marker is None or marker < state.closed_at_ms)
    everything = everything or recovered
    due_by = float("inf") if everything else None
    sent = _publish_claimed(
        lambda: parking.claim(limit=CLAIM_CHUNK, lease_s=lease, due_by=due_by), publish
    )
    # A replay whose lease ran out and that never ended was lost (its message gone with Redis
    # data): sent again, but only with nothing queued -- a queued one is not lost, only late.
    resent = 0
    if not store.queued_messages(QUEUE):
        resent = _publish_claimed(
            lambda: parking.reclaim(limit=CLAIM_CHUNK, lease_s=lease), publish
        )
        if resent:
            log.warning("drain: sent again %d parked sync(s) whose replay never ended", resent)
    if recovered and state.closed_at_ms is not None:
        store.mark_drained_all(state.closed_at_ms)
    if sent:
        log.info(
            "drain: sent %d parked sync(s)%s",
            sent,
            f" (all of them: Metronome recovered at {iso(state.closed_at_ms)})"
            if recovered
            else "",
        )
    return {
        "status": "ok",
        "sent": sent,
        "resent": resent,
        "everything": everything,
        "parked": parking.count(),
    }


def _publish_claimed(claim: Callable[[], Sequence[ParkedSync]], publish: Publish) -> int:
    """Claim a chunk and publish it, until nothing is left or DRAIN_MAX went out (the next
    drain sends more); returns how many were sent."""
    sent = 0
    while sent < DRAIN_MAX:
        items = claim()
        if not items:
            break
        publish(items)
        sent += len(items)
    return sent


def _expire(ctx: WorkerContext) -> int:
    """Syncs parked longer than CRMSYNC_PARK_MAX_AGE_S while the breaker stays open (so never
    replayed to fail once more): dead letters now, for a person to look at."""
    count = 0
    for account in ctx.parking.expired_accounts():
        item = ctx.parking.get(account)
        if item is None or not ctx.parking.remove(account):
            continue
        ctx.store.dead_letter(
            account_id=account,
            kind="transient_exhausted",
            reason=(
                f"parked for {item.age_s() / 3600:.1f} h ({item.attempts} attempts) while "
                f"Metronome stayed unavailable: {item.reason}"
            ),
            task_id=item.task_id or "drain",
            snapshot=item.record,
            trigger=item.sync_reason,
        )
        ctx.store.count_outcome("dead_lettered")
        log.warning("drain: parked sync of %s expired into a dead letter", account)
        count += 1
    return count


def _read_probe(ctx: WorkerContext) -> str:
    """With nothing parked, one cheap read probes an open breaker (a quiet org would
    otherwise keep it open until the next close)."""
    breaker = ctx.metronome_breaker
    admission = breaker.admit()
    if not admission.probe:
        return "not_due"
    with breaker.probing(admission):
        try:
            ctx.gateway.ping()
        except TransientError as exc:
            breaker.failed(f"probe GET /v1/customers: {exc}")
            return "failed"
        except MetronomeError:
            pass  # a 4xx: Metronome is up and answering
        return "closed" if breaker.succeeded() else "ok"


@app.task(name=DRAIN_TASK, ignore_result=False, acks_late=False)
def drain_parked(everything: bool = False) -> dict[str, Any]:
    """Send the due parked syncs (beat sends this every CRMSYNC_POLL_INTERVAL_S)."""
    return run_drain(get_context(), everything=everything)
