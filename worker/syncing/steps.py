"""The steps of one account's sync, in the order tasks/sync.py runs them.

Each step either answers (a Done or Retry that ends the sync) or hands the next step what it
needs. The order is the product's promise; the module docstring of tasks/sync.py says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import redis

from mappings import DesiredCustomer, MappingError
from mappings.ids import InvalidSalesforceId, normalize_salesforce_id
from worker.contracts.step import (
    ContractPlan,
    ContractResults,
    ensure_contracts,
    plan_contracts,
    report_contract_problems,
)
from worker.metronome.errors import TokenRefusedError
from worker.outages.metronome import BreakerOpenError, describe_open
from worker.outages.token import describe as describe_refusal
from worker.salesforce.stamps import is_superseded, snapshot_stamp
from worker.state.store import AccountState
from worker.syncing.actions import dead_letter, settle
from worker.syncing.failures import failure_outcome, succeeded
from worker.syncing.outcomes import (
    MAX_DELIVERIES,
    DeadLetter,
    Done,
    Park,
    Retry,
    SyncRun,
    snapshot_hash,
)

if TYPE_CHECKING:
    from worker.metronome.engine import SyncOutcome
    from worker.state.store import HeldLock

#: The sync's log lines keep the logger name operators filter on.
log = logging.getLogger("tasks.sync")


@dataclass(frozen=True, slots=True)
class Mapped:
    """The record mapped: the customer it should be and its won deals' contract plan."""

    customer: DesiredCustomer
    contracts: ContractPlan
    state_hash: str


def validate(run: SyncRun, account_id: Any) -> SyncRun | Done:
    """1. The message must be ours: a valid id and a record of that account."""
    try:
        account = normalize_salesforce_id(str(account_id))
    except InvalidSalesforceId as exc:
        why = f"account id is not a Salesforce id: {exc}"
        return dead_letter(run, DeadLetter("malformed_message", why))
    run = replace(run, account=account)
    if not isinstance(run.record, dict) or record_account(run.record) != account:
        why = "record is not an Opportunity snapshot of this account (AccountId mismatch)"
        return dead_letter(run, DeadLetter("malformed_message", why))
    return run


def count_delivery(run: SyncRun, *, counted: bool) -> Done | None:
    """2. Poison messages: count deliveries of this exact attempt."""
    deliveries = 1 if counted else run.ctx.store.count_delivery(run.task_id, run.retries)
    if deliveries > MAX_DELIVERIES:
        why = f"delivered {deliveries} times without finishing (worker killed each time?)"
        return dead_letter(run, DeadLetter("redelivered", why))
    return None


def map_record(run: SyncRun) -> Mapped | Done:
    """3. Map (pure), then the record's won deals to contracts (pure + Redis reads): bad deals
    dead-letter alone, changed ones are "needs attention", the rest are pending or done."""
    store = run.ctx.store
    try:
        desired = run.ctx.mapping.map_record(run.record)
    except MappingError as exc:
        bad_hash = snapshot_hash(run.record)
        if not run.force and store.dead_hash(run.account) == bad_hash:
            store.count_outcome("unchanged")
            return Done("unchanged")  # the same bad record was dead-lettered already
        return dead_letter(run, DeadLetter("mapping", str(exc), refuse=True))
    contracts = plan_contracts(run.ctx, run.record, desired, force=run.force)
    report_contract_problems(
        run.ctx,
        contracts,
        account=run.account,
        record=run.record,
        task_id=run.task_id,
        reason=run.reason,
    )
    return Mapped(desired, contracts, desired.state_hash())


def dedupe(run: SyncRun, mapped: Mapped, state: AccountState) -> Done | None:
    """4. The customer as last synced and no contract to make -> zero API calls; a snapshot
    Metronome refused (dead-lettered) is not sent again until it changes."""
    dead_hash = None if run.force else state.dead_hash
    if dead_hash is not None and dead_hash == snapshot_hash(run.record):
        run.ctx.store.count_outcome("unchanged")
        return Done("unchanged", state.customer_id)
    contracts = mapped.contracts
    if customer_unchanged(run, mapped, state) and not contracts.waiting:
        run.ctx.store.count_outcome("unchanged")
        return Done("unchanged", state.customer_id)
    return None


def customer_unchanged(run: SyncRun, mapped: Mapped, state: AccountState) -> bool:
    return not run.force and state.state_hash == mapped.state_hash


def converge(run: SyncRun, mapped: Mapped, *, unchanged: bool, known_absent: bool) -> Done | Retry:
    """4b-7. Past the token gate (worker/outages/token.py: while Metronome refuses the token
    the sync parks at once, with zero calls) and Metronome's circuit breaker
    (worker/outages/metronome.py: likewise while it is open; in both, the first one asking
    once a probe is due is the probe), under the owner's lock (the customer owner differs
    under roll-up): the customer, its record, then the contracts."""
    token, breaker = run.ctx.metronome_token, run.ctx.metronome_breaker
    allowed = token.admit()
    if not allowed.go:  # Metronome refuses the token: park, zero calls (outages/token.py)
        return settle(run, Park(TokenRefusedError(describe_refusal(token.state()), sent=False)))
    admission = breaker.admit()
    if not admission.go:
        return settle(run, Park(BreakerOpenError(describe_open(breaker.state()))))
    owner = mapped.customer.salesforce_account_id
    stamp = snapshot_stamp(run.record)
    with token.probing(allowed), breaker.probing(admission):
        try:
            with run.ctx.store.account_lock(owner, stamp_of=run.account) as held:
                superseded = is_superseded(stamp, held.applied_stamp)
                if superseded or (unchanged and held.customer_id):
                    return contracts_only(run, mapped, held, stamp, superseded=superseded)
                outcome, result = apply_customer(run, mapped, held, known_absent=known_absent)
                # 7. Contracts, under the same lock, on the customer just converged. The
                # outcome is counted after them: a waiter (`poll --wait`, the demo) must not
                # see the sync finished while its contracts are still being made.
                made = apply_contracts(run, mapped, outcome.customer_id)
                if mapped.contracts.waiting:
                    run.ctx.store.count_outcome(result)
        except redis.RedisError:
            # Redis restarting (refused, or still loading its AOF: BusyLoadingError) says
            # nothing about the record: the task retries it (sync_account), never
            # dead-letters it. Found by the chaos run (seed 2): two closes dead-lettered as
            # "BusyLoadingError".
            raise
        except Exception as exc:
            # Settled here, inside the probe context (worker/syncing/actions.py says why).
            return settle(run, failure_outcome(run, exc, owner))
        succeeded(run, outcome.calls + made.calls)
    log.info(
        "synced account %s: %s (%d calls, %d contracts created)",
        run.account,
        result,
        outcome.calls + made.calls,
        len(made.created),
        extra={
            "account_id": run.account,
            "customer_id": outcome.customer_id,
            "task_id": run.task_id,
        },
    )
    return Done(result, outcome.customer_id, outcome.calls + made.calls, len(made.created))


def contracts_only(
    run: SyncRun, mapped: Mapped, held: HeldLock, stamp: Any, *, superseded: bool
) -> Done:
    """Either a newer snapshot of this account was applied while this one waited (in a
    batch, a retry's countdown, a redelivery, the parking): applying it would undo that; or
    only contracts are left to make. Its deals' contracts are still made: a contract is
    created once and never edited, so an older snapshot cannot undo anything there."""
    if superseded:
        log.info(
            "skipped account %s: snapshot %s is older than the one applied (%s)",
            run.account,
            stamp,
            held.applied_stamp,
            extra={"account_id": run.account, "task_id": run.task_id},
        )
    made = apply_contracts(run, mapped, held.customer_id)
    succeeded(run, made.calls)
    run.ctx.store.count_outcome("unchanged")
    return Done("unchanged", held.customer_id, made.calls, len(made.created))


def apply_customer(
    run: SyncRun, mapped: Mapped, held: HeldLock, *, known_absent: bool
) -> tuple[SyncOutcome, str]:
    """5-6. The upsert engine converges the customer; its hash, id and ledger line are
    recorded (releasing the lock in the same round trip when no contract or edit waits).

    The poll's batched find saw no customer: skip the per-account find (the create's 409 on
    the identity alias still guards against one made since). The customer id is the one read
    under the lock, never an earlier read."""
    searched = known_absent and not held.customer_id and run.retries == 0
    outcome = run.ctx.engine.sync(
        mapped.customer,
        cached_customer_id=held.customer_id,
        searched=searched,
        generation=held.generation,
    )
    result = "created" if outcome.created else ("updated" if outcome.changes else "in_sync")
    owner = mapped.customer.salesforce_account_id
    waiting = mapped.contracts.waiting
    run.ctx.store.finish_sync(
        run.account,
        state_hash=mapped.state_hash,
        customer_id=outcome.customer_id,
        owner_account_id=owner,
        outcome=result,
        ledger_entry={
            "account_id": run.account,
            "owner_account_id": owner,
            "opportunity_id": str(run.record.get("Id") or ""),  # the deal's history too
            "customer_id": outcome.customer_id,
            "outcome": result,
            "changes": list(outcome.changes),
            "calls": outcome.calls,
            "reason": run.reason,
            "task_id": run.task_id,
            "duration_ms": round((time.monotonic() - run.started) * 1000, 1),
        },
        release=None if waiting else held,
        snapshot_stamp=snapshot_stamp(run.record),
        count=not waiting,
    )
    return outcome, result


def apply_contracts(run: SyncRun, mapped: Mapped, customer_id: str | None) -> ContractResults:
    """The contract of each pending won deal (worker/contracts/step.py), once the customer
    exists."""
    if not mapped.contracts.waiting or customer_id is None:
        return ContractResults()
    return ensure_contracts(
        run.ctx,
        mapped.contracts.pending,
        edits=mapped.contracts.edits,
        rows=mapped.contracts.rows,
        verify=mapped.contracts.verify,
        customer=mapped.customer,
        customer_id=customer_id,
        account=run.account,
        record=run.record,
        task_id=run.task_id,
        reason=run.reason,
    )


def record_account(record: dict[str, Any]) -> str | None:
    """The normalised account id the record belongs to, or None when it names none."""
    account = record.get("Account")
    raw = record.get("AccountId") or (account.get("Id") if isinstance(account, dict) else None)
    if not isinstance(raw, str):
        return None  # a number, a list, an object: not a Salesforce id, whatever it holds
    try:
        return normalize_salesforce_id(str(raw)) if raw else None
    except InvalidSalesforceId:
        return None
