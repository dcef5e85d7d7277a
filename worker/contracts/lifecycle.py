"""Expansions and renewals: which contract a later deal changes, and the edit it makes.

- **Which contract.** A deal that names the deal it expands or renews (a lookup field) changes
  that deal's contract: known from Redis (no call), else found by its uniqueness key in the
  customer's contract list. A deal that names none changes the account's one live contract on
  its start date. None, or several: "needs attention" with the candidates -- never a guess.
- **Expansion = an edit**, exactly once by the uniqueness key derived from the expansion
  deal's id: after any ambiguous outcome the same key goes again and a 409 means it was
  applied. A seat line on a product and frequency the contract already subscribes to is a
  quantity update of that subscription, by an id known without a call in the normal case
  (worker/contracts/subscriptions.py; one read when not). Editing not enabled for the
  client is an operator's matter: "needs attention" with the edit body, never a retry loop.
- **Renewal = a new contract** with ``transition {type: RENEWAL, from_contract_id}``, starting
  where the renewed contract ends unless the deal names its own start; exactly once by its
  own uniqueness key, through the contract engine like any contract.

Expansions are remembered like contracts (the opportunity's state holds the edited contract's
id and the edit's hash): an unchanged expansion costs zero calls on later polls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mappings import DesiredCustomer, MappingError
from mappings.contracts.desired import DesiredContract
from mappings.contracts.edits import DesiredEdit
from worker.contracts.subscriptions import known_subscriptions, remember_added
from worker.contracts.target import Target, find_target, utc_instant
from worker.metronome.actual import canonical_json
from worker.metronome.contract_edits import EditingNotEnabledError
from worker.metronome.errors import ConflictError, PermanentError, ServerError, TransientError
from worker.metronome.idempotency import idempotency_key

if TYPE_CHECKING:
    from worker.contracts.context import ContractContext

log = logging.getLogger(__name__)

EDIT_GENERATION_PREFIX = "edit:"


@dataclass(slots=True)
class PendingEdit:
    edit: DesiredEdit
    row: dict[str, Any]


@dataclass(slots=True)
class EditResults:
    applied: list[str] = field(default_factory=list)
    attention: int = 0
    dead: list[tuple[str, str, str]] = field(default_factory=list)  # (opportunity, why, hash)


def plan_edits(
    expansions: list[PendingEdit], states: Any, *, force: bool
) -> tuple[list[PendingEdit], list[tuple[DesiredEdit, list[str]]], int]:
    """(pending, changed with what differs, unchanged): an expansion applied with the same
    desired state costs nothing; one applied whose deal changed since is "needs attention"
    (once per state); one reported already (no contract, editing not enabled) waits for a
    change or a forced sync."""
    pending: list[PendingEdit] = []
    changed: list[tuple[DesiredEdit, list[str]]] = []
    unchanged = 0
    for item in expansions:
        state = states[item.edit.salesforce_opportunity_id]
        wanted = item.edit.state_hash()
        if state.contract_hash == wanted and not force:
            unchanged += 1
        elif state.contract_id is not None and state.contract_hash not in (None, wanted):
            if state.attention_hash != wanted:
                changed.append((item.edit, item.edit.differences(state.contract or {})))
            else:
                unchanged += 1
        elif state.attention_hash == wanted and not force:
            unchanged += 1
        else:
            pending.append(item)
    return pending, changed, unchanged


# -- renewals ---------------------------------------------------------------------------------


def renewal_terms(
    ctx: ContractContext,
    desired: DesiredContract,
    row: dict[str, Any] | None,
    customer: DesiredCustomer,
    customer_id: str,
) -> tuple[DesiredContract, str] | Target:
    """(the contract to create, the contract it renews), or the Target that says why not.
    A renewal naming no start of its own starts where the renewed contract ends."""
    target = find_target(
        ctx,
        customer_id,
        parent=desired.parent_opportunity_id,
        on=desired.starting_at,
        exclude_key=desired.uniqueness_key,
        ending_on_counts=True,
    )
    if target.contract_id is None:
        return target
    ending = utc_instant(target.ending_before)
    if desired.follows_renewed and ending is not None and row is not None:
        moved = ctx.mapping.map_contract(row, customer, starting_at_override=ending.date())
        if moved is not None:
            return moved, target.contract_id
    return desired, target.contract_id


def resolve_renewal(
    ctx: ContractContext,
    desired: DesiredContract,
    row: dict[str, Any] | None,
    customer: DesiredCustomer,
    customer_id: str,
    *,
    account: str,
    task_id: str,
    reason: str,
) -> tuple[DesiredContract, str | None] | None:
    """What to create for a renewal, and the contract it renews; None (after recording
    "needs attention") when there is no such contract, or several."""
    resolved = renewal_terms(ctx, desired, row, customer, customer_id)
    if isinstance(resolved, Target):
        renewal_attention(ctx, desired, resolved, account=account, task_id=task_id, reason=reason)
        return None
    return resolved


# -- expansions -------------------------------------------------------------------------------


def apply_edits(
    ctx: ContractContext,
    pending: list[PendingEdit],
    *,
    customer: DesiredCustomer,
    customer_id: str,
    account: str,
    task_id: str,
    reason: str,
) -> EditResults:
    results = EditResults()
    for item in pending:
        opportunity = item.edit.salesforce_opportunity_id
        target = find_target(
            ctx, customer_id, parent=item.edit.parent_opportunity_id, on=item.edit.starting_at
        )
        if target.contract_id is None:
            _attention(
                ctx,
                "expansion_contract_not_found",
                item.edit,
                account=account,
                task_id=task_id,
                reason=reason,
                details={"why": target.why, "candidates": list(target.candidates)},
            )
            results.attention += 1
            continue
        try:
            body = _edit_body(ctx, item, customer, customer_id, target)
            outcome = _send_edit(ctx, item.edit, body)
        except EditingNotEnabledError as exc:
            _attention(
                ctx,
                "contract_editing_not_enabled",
                item.edit,
                account=account,
                task_id=task_id,
                reason=reason,
                details={"message": exc.message, "edit_body": body},
            )
            results.attention += 1
            continue
        except (PermanentError, MappingError) as exc:
            results.dead.append((opportunity, str(exc), item.edit.state_hash()))
            continue
        _record_edit(
            ctx,
            item.edit,
            target.contract_id,
            outcome,
            customer_id=customer_id,
            account=account,
            task_id=task_id,
            reason=reason,
        )
        results.applied.append(opportunity)
    return results


def _record_edit(
    ctx: ContractContext,
    edit: DesiredEdit,
    contract_id: str,
    outcome: str,
    *,
    customer_id: str,
    account: str,
    task_id: str,
    reason: str,
) -> None:
    """The expansion is applied: remember it (an unchanged one costs nothing later), resolve
    its dead letter, count it, write its ledger line (indexed on the deal it expands too)."""
    opportunity = edit.salesforce_opportunity_id
    ctx.contract_store.record_contract(
        opportunity,
        contract_id=contract_id,
        customer_id=customer_id,
        contract_hash=edit.state_hash(),
        canonical=edit.canonical(),
    )
    ctx.store.dead_letter_book.resolve(account, opportunity_id=opportunity, by=task_id, how=outcome)
    ctx.store.count_outcome(outcome)
    parent = edit.parent_opportunity_id
    ctx.store.append_ledger(
        {
            "account_id": account,
            "opportunity_id": opportunity,
            "customer_id": customer_id,
            "contract_id": contract_id,
            "outcome": outcome,
            "reason": reason,
            "task_id": task_id,
            "edit_uniqueness_key": edit.uniqueness_key,
            **({"parent_opportunity_id": parent} if parent else {}),
        }
    )
    log.info(
        "%s: contract %s for expansion %s",
        outcome,
        contract_id,
        opportunity,
        extra={"account_id": account, "task_id": task_id},
    )


def _edit_body(
    ctx: ContractContext,
    item: PendingEdit,
    customer: DesiredCustomer,
    customer_id: str,
    target: Target,
) -> dict[str, Any]:
    assert target.contract_id is not None  # noqa: S101 - checked by the caller
    end = utc_instant(target.ending_before)
    edit = ctx.mapping.map_expansion(item.row, customer, end.date() if end else None) or item.edit
    seats = edit.line_terms.subscriptions  # a seat line may update one: its id is needed
    known = known_subscriptions(ctx, customer_id, target.contract_id, seats, target.subscriptions)
    return edit.request_body(customer_id, target.contract_id, known)


def _send_edit(ctx: ContractContext, edit: DesiredEdit, body: dict[str, Any]) -> str:
    """ "contract_edited", or "contract_edit_exists" after a 409 (the key was used: applied)."""
    opportunity = edit.salesforce_opportunity_id
    generation = EDIT_GENERATION_PREFIX + opportunity
    generations = ctx.contracts.generations
    key = idempotency_key(
        opportunity,
        edit.state_hash(),
        generations.current(generation),
        f"editContract {body['contract_id']}",
        canonical_json(body),
    )
    try:
        answer = ctx.gateway.edit_contract(body, key=key)
    except ConflictError:
        return "contract_edit_exists"
    except TransientError as exc:
        if isinstance(exc, ServerError):
            generations.bump(generation)  # a cached 5xx: the same key again, a new request
        raise
    remember_added(ctx, body["contract_id"], answer.added_subscriptions)
    return "contract_edited"


def _attention(
    ctx: ContractContext,
    event: str,
    edit: DesiredEdit,
    *,
    account: str,
    task_id: str,
    reason: str,
    details: dict[str, Any],
) -> None:
    opportunity = edit.salesforce_opportunity_id
    ctx.store.attention.record(
        event,
        record_id=opportunity,
        account_id=account,
        details=details,
        task_id=task_id,
        trigger=reason,
    )
    ctx.contract_store.mark_attention(opportunity, edit.state_hash())
    log.warning(
        "expansion %s needs attention (%s): %s",
        opportunity,
        event,
        details,
        extra={"account_id": account, "task_id": task_id},
    )


def renewal_attention(
    ctx: ContractContext,
    desired: DesiredContract,
    target: Target,
    *,
    account: str,
    task_id: str,
    reason: str,
) -> None:
    opportunity = desired.salesforce_opportunity_id
    ctx.store.attention.record(
        "renewal_contract_not_found",
        record_id=opportunity,
        account_id=account,
        details={"why": target.why, "candidates": list(target.candidates)},
        task_id=task_id,
        trigger=reason,
    )
    ctx.contract_store.mark_attention(opportunity, desired.state_hash())
