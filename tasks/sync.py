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

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Any, cast

import redis
from celery import Task, signals
from celery.backends.base import DisabledBackend
from celery.exceptions import SoftTimeLimitExceeded

from mappings import MappingError
from worker.app import RETRY_BACKOFF_MAX_S, app, declare_queue
from worker.context import WorkerContext, get_context
from worker.contracts.step import (
    ContractResults,
    ensure_contracts,
    plan_contracts,
    report_contract_problems,
)
from worker.metronome.errors import (
    PermanentError,
    RateLimitedError,
    TransientError,
    UnresolvableConflictError,
)
from worker.outages.metronome import BreakerOpenError, describe_open
from worker.queue.names import PARKED_REASON, SYNC_ACCOUNT
from worker.queue.publish import request_drain
from worker.salesforce.ids import InvalidSalesforceId, normalize_salesforce_id
from worker.salesforce.stamps import is_superseded, snapshot_stamp
from worker.state.store import AccountState, LockBusy

log = logging.getLogger(__name__)

#: Deliveries of one message (one retry attempt) before it is treated as poison. Ten, as the
#: reliability issue asks: far above what a healthy run sees (1, or 2 after a worker kill).
MAX_DELIVERIES = 10
RETRY_BACKOFF_BASE_S = 2.0
#: A busy account lock clears when the other sync ends (seconds): retry soon.
LOCK_BUSY_COUNTDOWN_S = 1.0
#: Waits for a busy account lock before giving up: each waits at least a second and the lock
#: is a lease that a dead holder stops renewing, so this bounds only a pathological case.
MAX_LOCK_WAITS = 400


@dataclass(frozen=True, slots=True)
class Retry:
    """The sync must run again later; ``countdown`` seconds from now."""

    countdown: float
    reason: str
    #: False when the sync only waited (the account lock was busy): waits do not use up the
    #: retry budget.
    failure: bool = True
    #: The task's soft time limit struck during this sync.
    out_of_time: bool = False


@dataclass(frozen=True, slots=True)
class Done:
    outcome: str  # created | updated | in_sync | unchanged | dead_lettered | skipped
    customer_id: str | None = None
    calls: int = 0
    contracts_created: int = 0


def snapshot_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(record, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()


def backoff(
    retries: int, settings_immediate: bool, floor: float = 0.0, visibility_timeout_s: int = 900
) -> float:
    """Full-jitter exponential backoff, capped at RETRY_BACKOFF_MAX_S and at a quarter of the
    visibility timeout: a countdown longer than that is delivered twice (DESIGN.md)."""
    if settings_immediate:
        return 0.0
    cap = min(RETRY_BACKOFF_MAX_S, visibility_timeout_s / 4)
    ceiling = min(cap, RETRY_BACKOFF_BASE_S * (2**retries))
    return max(floor, random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not crypto


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
    result = _sync(
        ctx,
        account_id,
        record,
        force=force,
        reason=reason,
        task_id=task_id,
        retries=retries,
        known_absent=known_absent,
        state=state,
        delivery_counted=delivery_counted,
    )
    if reason == PARKED_REASON and isinstance(result, Done) and result.outcome != "parked":
        _leave_parking(ctx, account_id, record)
    return result


def _sync(
    ctx: WorkerContext,
    account_id: Any,
    record: Any,
    *,
    force: bool,
    reason: str,
    task_id: str,
    retries: int,
    known_absent: bool,
    state: AccountState | None,
    delivery_counted: bool,
) -> Done | Retry:
    store = ctx.store
    breaker = ctx.metronome_breaker
    started = time.monotonic()

    def dead(kind: str, why: str, account: str, snapshot: Any) -> Done:
        snapshot_dict = snapshot if isinstance(snapshot, dict) else {"raw": repr(snapshot)[:2000]}
        store.dead_letter(
            account_id=account,
            kind=kind,
            reason=why,
            task_id=task_id,
            snapshot=snapshot_dict,
            trigger=reason,
        )
        store.count_outcome("dead_lettered")
        log.warning(
            "dead-lettered account %s (%s): %s",
            account,
            kind,
            why,
            extra={"account_id": account, "task_id": task_id},
        )
        return Done("dead_lettered")

    def refused(why: str) -> Done:
        # Metronome refuses this snapshot as it stands: retrying it on every poll that re-reads
        # it (the overlap window) would only repeat the refusal. A change, a re-sync or a
        # redrive (force) sends it again.
        store.client.hset(store.keys.account(account), "dead_hash", snapshot_hash(record))
        return dead("permanent", why, account, record)

    def park(exc: Exception) -> Done:
        """Transient, not dead: the sync waits in the parking (worker/outages/parking.py) and the
        drain sends it again; a dead letter only once it has failed for a whole day."""
        item = ctx.parking.park(
            account, record, reason=str(exc), force=force, sync_reason=reason, task_id=task_id
        )
        if ctx.parking.expired(item):
            ctx.parking.remove(account)
            hours = item.age_s() / 3600
            return dead(
                "transient_exhausted",
                f"still failing after {hours:.1f} h parked ({item.attempts} attempts): {exc}",
                account,
                item.record,
            )
        store.count_outcome("parked")
        log.warning(
            "parked account %s (attempt %d, next try in %.0f s, parked since %s): %s",
            account,
            item.attempts,
            max(0.0, (item.next_at or 0.0) - time.time()),
            item.summary()["since"],
            exc,
            extra={"account_id": account, "task_id": task_id},
        )
        return Done("parked")

    def transient(exc: Exception, floor: float = 0.0, *, metronome: bool = True) -> Done | Retry:
        """A transient failure: a quick retry while the breaker is closed and the budget
        lasts (a blip: a parked sync's replay gets them too, so a stray 5xx after recovery
        does not send it back for a whole backoff), otherwise parked. A Metronome failure
        also counts toward the breaker."""
        breaker_open = metronome and breaker.failed(str(exc), account=account) != "counted"
        # Retries spent waiting for the account lock are not failures (see lock_busy).
        failures = retries - store.lock_waits(task_id) if retries else 0
        if breaker_open or failures >= ctx.settings.max_task_retries:
            return park(exc)
        wait = backoff(
            failures, ctx.settings.retry_immediately, floor, ctx.settings.visibility_timeout_s
        )
        return Retry(wait, str(exc))

    def succeeded(calls: int) -> None:
        """Metronome answered this sync's calls: the breaker learns it (a probe closes it,
        and the parked syncs are sent at once)."""
        if calls > 0 and breaker.succeeded():
            request_drain(everything=True)

    def lock_busy(exc: LockBusy, owner: str) -> Done | Retry:
        # Another sync of this account runs, or a killed one's lease has not run out yet:
        # wait for the lease, do not burn the retry budget (a close must not dead-letter
        # only because its account was busy).
        if store.count_lock_wait(task_id) > MAX_LOCK_WAITS:
            return dead(
                "lock_busy", f"gave up waiting for the account lock: {exc}", account, record
            )
        remaining = store.lock_remaining_s(owner)
        cap = ctx.settings.visibility_timeout_s / 4
        jitter = random.uniform(0, LOCK_BUSY_COUNTDOWN_S)  # noqa: S311 - jitter, not crypto
        wait = (
            0.0
            if ctx.settings.retry_immediately
            else min(cap, max(LOCK_BUSY_COUNTDOWN_S, remaining) + jitter)
        )
        return Retry(wait, str(exc), failure=False)

    def contract_step(customer_id: str | None) -> ContractResults:
        if not contracts.pending or customer_id is None:
            return ContractResults()
        return ensure_contracts(
            ctx,
            contracts.pending,
            verify=contracts.verify,
            customer=desired,
            customer_id=customer_id,
            account=account,
            record=record,
            task_id=task_id,
            reason=reason,
        )

    # 1. The message must be ours: a valid id and a record of that account.
    try:
        account = normalize_salesforce_id(str(account_id))
    except InvalidSalesforceId as exc:
        return dead("malformed_message", f"account id is not a Salesforce id: {exc}", "-", record)
    if not isinstance(record, dict) or _record_account(record) != account:
        return dead(
            "malformed_message",
            "record is not an Opportunity snapshot of this account (AccountId mismatch)",
            account,
            record,
        )

    # 2. Poison messages: count deliveries of this exact attempt.
    deliveries = 1 if delivery_counted else store.count_delivery(task_id, retries)
    if deliveries > MAX_DELIVERIES:
        return dead(
            "redelivered",
            f"delivered {deliveries} times without finishing (worker killed each time?)",
            account,
            record,
        )

    # 3. Map (pure).
    try:
        desired = ctx.mapping.map_record(record)
    except MappingError as exc:
        bad_hash = snapshot_hash(record)
        if not force and store.client.hget(store.keys.account(account), "dead_hash") == bad_hash:
            store.count_outcome("unchanged")
            return Done("unchanged")  # the same bad record was dead-lettered already
        store.client.hset(store.keys.account(account), "dead_hash", bad_hash)
        return dead("mapping", str(exc), account, record)

    # 3b. Map the record's won deals to contracts (pure + Redis reads): bad deals dead-letter
    # alone, changed ones are "needs attention", the rest are pending or already done.
    contracts = plan_contracts(ctx, record, desired, force=force)
    report_contract_problems(
        ctx, contracts, account=account, record=record, task_id=task_id, reason=reason
    )

    # 4. Dedupe: the customer as last synced and no contract to make → zero API calls; a
    # snapshot Metronome refused (dead-lettered) is not sent again until it changes.
    state_hash = desired.state_hash()
    if state is None:
        state = store.account_state(account)
    if not force and state.dead_hash is not None and state.dead_hash == snapshot_hash(record):
        store.count_outcome("unchanged")
        return Done("unchanged", state.customer_id)
    customer_unchanged = not force and state.state_hash == state_hash
    if customer_unchanged and not contracts.pending:
        store.count_outcome("unchanged")
        return Done("unchanged", state.customer_id)

    # 4b. Metronome's circuit breaker (worker/outages/metronome.py): while it is open the sync
    # parks at once, with zero calls; the first one asking once a probe is due is the probe.
    admission = breaker.admit()
    if not admission.go:
        return park(BreakerOpenError(describe_open(breaker.state())))

    # 5. Converge under the owner's lock (the customer owner differs under roll-up).
    owner = desired.salesforce_account_id
    stamp = snapshot_stamp(record)
    with breaker.probing(admission):
        try:
            with store.account_lock(owner, stamp_of=account) as held:
                superseded = is_superseded(stamp, held.applied_stamp)
                if superseded or (customer_unchanged and held.customer_id):
                    # Either a newer snapshot of this account was applied while this one
                    # waited (in a batch, a retry's countdown, a redelivery, the parking):
                    # applying it would undo that; or only contracts are left to make. Its
                    # deals' contracts are still made: a contract is created once and never
                    # edited, so an older snapshot cannot undo anything there.
                    if superseded:
                        log.info(
                            "skipped account %s: snapshot %s is older than the one applied (%s)",
                            account,
                            stamp,
                            held.applied_stamp,
                            extra={"account_id": account, "task_id": task_id},
                        )
                    made = contract_step(held.customer_id)
                    succeeded(made.calls)
                    store.count_outcome("unchanged")
                    return Done("unchanged", held.customer_id, made.calls, len(made.created))
                # The poll's batched find saw no customer: skip the per-account find (the
                # create's 409 on the identity alias still guards against one made since).
                # The customer id is the one read under the lock, never an earlier read.
                searched = known_absent and not held.customer_id and retries == 0
                outcome = ctx.engine.sync(
                    desired,
                    cached_customer_id=held.customer_id,
                    searched=searched,
                    generation=held.generation,
                )
                # 6. Record (and release the lock in the same round trip when no contract
                # waits).
                result = (
                    "created" if outcome.created else ("updated" if outcome.changes else "in_sync")
                )
                store.finish_sync(
                    account,
                    state_hash=state_hash,
                    customer_id=outcome.customer_id,
                    owner_account_id=owner,
                    outcome=result,
                    ledger_entry={
                        "account_id": account,
                        "owner_account_id": owner,
                        "opportunity_id": str(record.get("Id") or ""),  # the deal's history too
                        "customer_id": outcome.customer_id,
                        "outcome": result,
                        "changes": list(outcome.changes),
                        "calls": outcome.calls,
                        "reason": reason,
                        "task_id": task_id,
                        "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    },
                    release=None if contracts.pending else held,
                    snapshot_stamp=stamp,
                    count=not contracts.pending,
                )
                # 7. Contracts, under the same lock, on the customer just converged. The
                # outcome is counted after them: a waiter (`poll --wait`, the demo) must not
                # see the sync finished while its contracts are still being made.
                made = contract_step(outcome.customer_id)
                if contracts.pending:
                    store.count_outcome(result)
        except LockBusy as exc:
            return lock_busy(exc, owner)
        except BreakerOpenError as exc:
            # The breaker opened while this sync ran: it stopped at its next call. Not one
            # more failure (the failures that opened it were counted).
            return park(exc)
        except RateLimitedError as exc:
            return transient(exc, exc.retry_after_s or 0.0)
        except TransientError as exc:
            return transient(exc)
        except SoftTimeLimitExceeded:
            late = transient(TransientError("soft time limit"), metronome=False)
            # A batch must stop here and hand its other accounts on: the hard limit is near.
            return replace(late, out_of_time=True) if isinstance(late, Retry) else late
        except UnresolvableConflictError as exc:
            # An operator must choose between two customers: that is "needs attention" (with
            # what to do), and the record waits as a dead letter for the redrive after the fix.
            succeeded(1)  # Metronome is up and answering
            store.attention.record(
                "customer_conflict",
                record_id=account,
                account_id=account,
                details={"customer_ids": list(exc.customer_ids), "conflict": str(exc)},
                task_id=task_id,
                trigger=reason,
            )
            return refused(str(exc))
        except PermanentError as exc:
            succeeded(1)  # refused for good: Metronome is up and answering
            return refused(str(exc))
        except redis.RedisError:
            # Redis restarting (refused, or still loading its AOF: BusyLoadingError) says
            # nothing about the record: the task retries it (sync_account), never dead-letters
            # it. Found by the chaos run (seed 2): two closes dead-lettered as
            # "BusyLoadingError".
            raise
        except json.JSONDecodeError as exc:
            # A 200 whose body is cut short or is not JSON (a proxy's error page): the outcome
            # is unknown, like a dropped connection, so retry; the same Idempotency-Key
            # replays it.
            return transient(TransientError(f"Metronome answered unreadable JSON: {exc}"))
        except Exception as exc:  # a conflict or a bug: never lose the record
            return dead(type(exc).__name__, str(exc), account, record)
        succeeded(outcome.calls + made.calls)

    log.info(
        "synced account %s: %s (%d calls, %d contracts created)",
        account,
        result,
        outcome.calls + made.calls,
        len(made.created),
        extra={"account_id": account, "customer_id": outcome.customer_id, "task_id": task_id},
    )
    return Done(result, outcome.customer_id, outcome.calls + made.calls, len(made.created))


def _leave_parking(ctx: WorkerContext, account_id: Any, record: Any) -> None:
    """A parked sync's replay ended (synced, in sync, or a dead letter): it leaves the
    parking, unless a newer snapshot of the account was parked meanwhile."""
    try:
        account = normalize_salesforce_id(str(account_id))
    except InvalidSalesforceId:
        return
    if isinstance(record, dict):
        ctx.parking.finish(account, record)


def _record_account(record: dict[str, Any]) -> str | None:
    account = record.get("Account")
    raw = record.get("AccountId") or (account.get("Id") if isinstance(account, dict) else None)
    if not isinstance(raw, str):
        return None  # a number, a list, an object: not a Salesforce id, whatever it holds
    try:
        return normalize_salesforce_id(str(raw)) if raw else None
    except InvalidSalesforceId:
        return None


def dead_letter_message(kind: str, reason: str, account_id: Any, body: Any, task_id: str) -> None:
    """Record a message our task body never handled; never raises (it runs in Celery's own
    error paths, where a second exception would hide the first)."""
    try:
        account = str(account_id)[:40] if isinstance(account_id, str) else "-"
        store = get_context().store
        store.dead_letter(
            account_id=account,
            kind=kind,
            reason=reason[:2000],
            task_id=task_id[:200],
            snapshot={"raw": repr(body)[:2000]},
        )
        store.count_outcome("dead_lettered")
        log.warning("dead-lettered message %s (%s): %s", task_id[:200], kind, reason[:500])
    except Exception as exc:  # Redis down: the message is redelivered or rescanned later
        log.error("could not dead-letter message %s (%s): %s", task_id[:200], kind, exc)


class DeadLetterOnFailure(Task):  # type: ignore[misc]
    """A sync that fails *outside* run_sync's own handling still leaves a dead letter.

    Celery raises a TypeError before our code runs when a message has the wrong arguments
    (a hand-made ``celery call``, an old producer): by default that is only a FAILURE in the
    worker log and the message is acked and gone. Here it becomes a dead letter with the
    reason, so an operator sees it next to the records that could not map.
    """

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        kind = "malformed_message" if isinstance(exc, TypeError) else "task_failed"
        first = args[0] if isinstance(args, list | tuple) and args else None
        dead_letter_message(
            kind,
            f"{type(exc).__name__}: {exc}",
            first,
            {"args": args, "kwargs": kwargs},
            str(task_id),
        )


@signals.task_unknown.connect
def _on_unknown_task(
    sender: Any = None,
    message: Any = None,
    exc: Any = None,
    name: Any = None,
    id: Any = None,
    **_: Any,
) -> None:
    """A message naming a task this worker does not have (not ours, or a typo): Celery logs
    and discards it; we also keep it as a dead letter."""
    dead_letter_message(
        "unknown_task",
        f"no task named {str(name)[:200]!r} is registered here",
        None,
        getattr(message, "body", None),
        str(id),
    )


@signals.task_rejected.connect
def _on_rejected_message(
    sender: Any = None, message: Any = None, exc: Any = None, **_: Any
) -> None:
    """A message Celery cannot even read as a task (no task headers, bad protocol)."""
    headers = getattr(message, "headers", None) or {}
    dead_letter_message(
        "rejected_message",
        f"not a task message: {exc!r}" if exc is not None else "not a task message",
        None,
        getattr(message, "body", None),
        str(headers.get("id", "-")) if isinstance(headers, dict) else "-",
    )


#: What both sync tasks (one account, a batch) are: acked late (a killed worker's message is
#: redelivered), never capped by Celery's own retry count (run_sync keeps the budget), and a
#: failure outside run_sync's handling becomes a dead letter. No result backend: their results
#: are never read (the ledger is the record), and on a lost broker connection Celery cancels a
#: running one by writing its RETRY state to the backend -- the same Redis, down at that moment
#: -- and when that write fails it takes the killed task for revoked and acks its message: the
#: batch running during a Redis restart was lost (chaos run, seed 11: 18 accounts missing).
SYNC_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "max_retries": None,
    "acks_late": True,
    "base": DeadLetterOnFailure,
    "backend": DisabledBackend(app),
}


def retry_while_redis_is_away(task: Task, what: str, exc: Exception) -> Exception:
    """The retry to raise when Redis is unreachable mid-sync (a restart, a failover): a
    failed task is acked like a successful one, so its close would be lost until the record
    changes; a retry waits for Redis instead."""
    log.warning("redis unreachable during %s: %s; retrying", what, exc)
    settings = get_context().settings
    wait = backoff(
        int(task.request.retries),
        settings.retry_immediately,
        visibility_timeout_s=settings.visibility_timeout_s,
    )
    return cast(Exception, task.retry(countdown=wait, exc=None))


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
    if isinstance(result, Retry):
        get_context().store.count_outcome("retried")
        declare_queue()  # a retry is a publish: see tasks.batch (routing keys lost → dropped)
        raise self.retry(countdown=result.countdown, exc=None)
    return {
        "outcome": result.outcome,
        "customer_id": result.customer_id,
        "calls": result.calls,
        "contracts_created": result.contracts_created,
    }
