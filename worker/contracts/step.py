"""The contract step of a sync: each won opportunity of the record → its contract, once.

Runs after the customer step (the contract needs the customer, and the customer must hold the
billing configuration first), in two halves:

- :func:`plan_contracts` (before the lock, Redis reads only): map every won opportunity the
  record carries; a deal whose contract is known with the same desired state costs nothing;
  one whose contract is known but whose deal changed since is "needs attention" (once per
  changed state), never an edit; a deal that cannot be mapped dead-letters (once per bad
  state); the rest are *pending*.
- :func:`ensure_contracts` (under the account lock): create each pending contract through the
  contract engine, or adopt the one that exists. A deal the API refuses dead-letters alone;
  a transient failure propagates, so the sync retries (the customer is recorded by then, so
  the retry is only the contracts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mappings import DesiredCustomer, MappingError
from mappings.contracts.desired import DesiredContract
from mappings.contracts.edits import DesiredEdit
from mappings.contracts.engine import opportunity_id, won_opportunity_rows
from worker.contracts import lifecycle
from worker.contracts.context import ContractContext
from worker.contracts.engine import ContractOutcome
from worker.contracts.problems import dead_letter, failure_hash
from worker.metronome.actual import BillingConfigurationState, canonical_json
from worker.metronome.errors import ContractConflictError, ContractInputError

if TYPE_CHECKING:
    from worker.metronome import MetronomeGateway

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ContractPlan:
    pending: list[DesiredContract] = field(default_factory=list)
    #: Pending deals whose contract Redis knows (a re-sync): looked up, created only if gone.
    verify: set[str] = field(default_factory=set)
    #: Contract (or edit) exists and the deal changed since: (desired, fields that differ).
    changed: list[tuple[DesiredContract | DesiredEdit, list[str]]] = field(default_factory=list)
    #: Expansions to apply to the contract they expand.
    edits: list[lifecycle.PendingEdit] = field(default_factory=list)
    #: Each mapped deal's row (a renewal is mapped again with the renewed contract's end).
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Deals that cannot be mapped, not dead-lettered before: (opportunity id, error, hash).
    bad: list[tuple[str, MappingError, str]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def waiting(self) -> bool:
        """A contract to create or an edit to make: the sync is not finished (nor its account
        lock released) until they are, or a waiter (`poll --wait`, a test) would see it done
        before the contract, the edit or its "needs attention" exists."""
        return bool(self.pending or self.edits)


@dataclass(slots=True)
class ContractResults:
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    #: Expansion deals whose edit was applied (now or before: a 409).
    edited: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    calls: int = 0


def plan_contracts(
    ctx: ContractContext, record: dict[str, Any], customer: DesiredCustomer, *, force: bool
) -> ContractPlan:
    plan = ContractPlan()
    if ctx.mapping.contract is None:
        return plan
    mapped: list[DesiredContract] = []
    expansions: list[lifecycle.PendingEdit] = []
    failures: list[tuple[str, MappingError, str]] = []
    for row in won_opportunity_rows(record):
        try:
            desired = ctx.mapping.map_contract(row, customer)
            edit = ctx.mapping.map_expansion(row, customer) if desired is None else None
        except MappingError as exc:
            identity = opportunity_id(row) or exc.record_id
            failures.append((identity, exc, failure_hash(exc)))
            continue
        if desired is not None:
            mapped.append(desired)
            plan.rows[desired.salesforce_opportunity_id] = row
        elif edit is not None:
            expansions.append(lifecycle.PendingEdit(edit, row))
    states = ctx.contract_store.states(
        [d.salesforce_opportunity_id for d in mapped]
        + [e.edit.salesforce_opportunity_id for e in expansions]
        + [f[0] for f in failures]
    )
    edits, changed, unchanged = lifecycle.plan_edits(expansions, states, force=force)
    plan.edits.extend(edits)
    plan.changed.extend(changed)
    plan.unchanged += unchanged
    for desired in mapped:
        state = states[desired.salesforce_opportunity_id]
        if state.contract_id is None:
            if state.dead_hash == desired.state_hash() and not force:
                plan.unchanged += 1  # refused as it stands: dead-lettered once, not per poll
            else:
                plan.pending.append(desired)
        elif state.contract_hash == desired.state_hash() and not force:
            plan.unchanged += 1
        elif state.contract_hash == desired.state_hash():
            # A re-sync looks the contract up (one list call) instead of re-sending the create:
            # the same Idempotency-Key would only replay the first answer, and a contract a
            # person archived since would go unnoticed.
            plan.pending.append(desired)
            plan.verify.add(desired.salesforce_opportunity_id)
        elif state.attention_hash != desired.state_hash():
            plan.changed.append((desired, desired.differences(state.contract or {})))
        else:
            plan.unchanged += 1
    for identity, failure, bad_hash in failures:
        if force or states[identity].dead_hash != bad_hash:
            plan.bad.append((identity, failure, bad_hash))
    return plan


def report_contract_problems(
    ctx: ContractContext,
    plan: ContractPlan,
    *,
    account: str,
    record: dict[str, Any],
    task_id: str,
    reason: str,
) -> int:
    """Dead letters for unmappable deals, "needs attention" for changed ones; no API call.
    Returns how many dead letters were written."""
    store = ctx.store
    for identity, error, bad_hash in plan.bad:
        dead_letter(
            ctx,
            account,
            opportunity=identity,
            why=str(error),
            record=record,
            task_id=task_id,
            trigger=reason,
            state_hash=bad_hash,
        )
    for desired, differences in plan.changed:
        opportunity = desired.salesforce_opportunity_id
        store.attention.record(
            "contract_opportunity_changed",
            record_id=opportunity,
            account_id=account,
            details={"differs": differences},
            task_id=task_id,
            trigger=reason,
        )
        ctx.contract_store.mark_attention(opportunity, desired.state_hash())
        log.warning(
            "opportunity %s changed after its contract was made (%s): needs attention",
            opportunity,
            ", ".join(differences),
            extra={"account_id": account, "task_id": task_id},
        )
    return len(plan.bad)


def ensure_contracts(
    ctx: ContractContext,
    pending: Sequence[DesiredContract],
    *,
    verify: Set[str] = frozenset(),
    customer: DesiredCustomer,
    customer_id: str,
    account: str,
    record: dict[str, Any],
    task_id: str,
    reason: str,
    edits: Sequence[lifecycle.PendingEdit] = (),
    rows: dict[str, dict[str, Any]] | None = None,
) -> ContractResults:
    """Create or adopt each pending contract (a renewal from the contract it renews), then
    apply each pending expansion; see the module docstring."""
    results = ContractResults()
    if not pending and not edits:
        return results
    engine = ctx.contracts
    gateway = ctx.gateway
    start = gateway.calls
    billing = _billing_loader(gateway, customer_id)
    preferred = [
        (c.billing_provider, c.delivery_method, canonical_json(c.configuration))
        for c in customer.billing_provider_configurations
    ]
    # Renewals last: the contract a renewal renews may be made by this very sync.
    for desired in sorted(pending, key=lambda d: d.kind == "renewal"):
        opportunity = desired.salesforce_opportunity_id
        try:
            found = engine.find(desired, customer_id) if opportunity in verify else None
            resolved: tuple[DesiredContract, str | None] | None = (desired, None)
            if found is None and desired.kind == "renewal":
                resolved = lifecycle.resolve_renewal(
                    ctx, desired, (rows or {}).get(opportunity), customer, customer_id,
                    account=account, task_id=task_id, reason=reason,
                )  # fmt: skip
            if resolved is None:
                continue  # needs attention: no contract to renew, or several
            sent, renews = resolved
            outcome = (
                ContractOutcome(found.id, False, found.archived, 1, found.subscriptions)
                if found is not None
                else engine.ensure(
                    sent, customer_id, billing, preferred=preferred, renews_contract_id=renews
                )
            )
        except (ContractInputError, ContractConflictError) as exc:
            dead_letter(
                ctx,
                account,
                opportunity=opportunity,
                why=str(exc),
                record=record,
                task_id=task_id,
                trigger=reason,
                state_hash=desired.state_hash(),
            )
            results.dead_lettered += 1
            continue
        (results.created if outcome.created else results.adopted).append(outcome.contract_id)
        _record_contract(
            ctx,
            desired,
            outcome,
            renews=renews,
            adopted_known=found is not None,
            customer_id=customer_id,
            account=account,
            task_id=task_id,
            reason=reason,
        )
    _apply_edits(ctx, edits, results, customer=customer, customer_id=customer_id,
                 account=account, record=record, task_id=task_id, reason=reason)  # fmt: skip
    results.calls = gateway.calls - start
    return results


def _billing_loader(
    gateway: MetronomeGateway, customer_id: str
) -> Callable[[], tuple[BillingConfigurationState, ...]]:
    """The customer's billing configurations, read at most once per sync (and only when a
    contract must name one by id)."""
    loaded: list[tuple[BillingConfigurationState, ...]] = []

    def billing() -> tuple[BillingConfigurationState, ...]:
        if not loaded:
            loaded.append(gateway.get_billing_configurations(customer_id))
        return loaded[0]

    return billing


def _apply_edits(
    ctx: ContractContext,
    edits: Sequence[lifecycle.PendingEdit],
    results: ContractResults,
    *,
    customer: DesiredCustomer,
    customer_id: str,
    account: str,
    record: dict[str, Any],
    task_id: str,
    reason: str,
) -> None:
    if not edits:
        return
    applied = lifecycle.apply_edits(
        ctx, list(edits), customer=customer, customer_id=customer_id, account=account,
        task_id=task_id, reason=reason,
    )  # fmt: skip
    results.edited.extend(applied.applied)
    for opportunity, why, state_hash in applied.dead:
        dead_letter(ctx, account, opportunity=opportunity, why=why, record=record,
                    task_id=task_id, trigger=reason, state_hash=state_hash)  # fmt: skip
        results.dead_lettered += 1


def _record_contract(
    ctx: ContractContext,
    desired: DesiredContract,
    outcome: ContractOutcome,
    *,
    renews: str | None = None,
    adopted_known: bool,
    customer_id: str,
    account: str,
    task_id: str,
    reason: str,
) -> None:
    """The deal has its contract: remember it, resolve the deal's dead letter, count it,
    write its ledger line, and flag an archived one for a person."""
    opportunity = desired.salesforce_opportunity_id
    ctx.contract_store.record_contract(
        opportunity,
        contract_id=outcome.contract_id,
        customer_id=customer_id,
        contract_hash=desired.state_hash(),
        canonical=desired.canonical(),
        subscriptions=outcome.subscriptions,
    )
    result = (
        "contract_created"
        if outcome.created
        else ("contract_exists" if adopted_known else "contract_adopted")
    )
    # The deal has its contract: a dead letter it had (a bad rate card fixed since) is done.
    ctx.store.dead_letter_book.resolve(account, opportunity_id=opportunity, by=task_id, how=result)
    ctx.store.count_outcome(result)
    ctx.store.append_ledger(
        {
            "account_id": account,
            "opportunity_id": opportunity,
            "customer_id": customer_id,
            "contract_id": outcome.contract_id,
            "outcome": result,
            "calls": outcome.calls,
            "reason": reason,
            "task_id": task_id,
            **(
                {
                    "renews_contract_id": renews,
                    "parent_opportunity_id": desired.parent_opportunity_id,
                }
                if renews
                else {}
            ),
        }
    )
    if outcome.archived:
        ctx.store.attention.record(
            "contract_archived",
            record_id=opportunity,
            account_id=account,
            details={"contract_id": outcome.contract_id, "customer_id": customer_id},
            task_id=task_id,
            trigger=reason,
        )
    log.info(
        "%s contract %s for opportunity %s",
        "created" if outcome.created else "adopted",
        outcome.contract_id,
        opportunity,
        extra={"account_id": account, "customer_id": customer_id, "task_id": task_id},
    )
