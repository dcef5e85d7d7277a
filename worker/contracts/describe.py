"""What the contract step would do for one record, for ``crmsync plan``: the contract each
won deal would get (a renewal: from which contract it transitions), the edit each expansion
would make, and what needs attention or a dead letter -- reads only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mappings import DesiredCustomer
from mappings.contracts.desired import DesiredContract
from mappings.contracts.edits import DesiredEdit
from mappings.contracts.terms import LineTerms
from worker.contracts.step import plan_contracts
from worker.contracts.target import find_target

if TYPE_CHECKING:
    from worker.contracts.context import ContractContext


def describe_contracts(
    ctx: ContractContext, record: dict[str, Any], customer: DesiredCustomer, customer_id: str | None
) -> list[str]:
    """What the contract step would do for ``record`` (``crmsync plan``); reads only: Redis,
    and the customer's contract list when the customer exists."""
    plan = plan_contracts(ctx, record, customer, force=True)
    existing = []
    lines: list[str] = []
    for identity, error, _ in plan.bad:
        lines.append(f"opportunity {identity}: no contract, dead-letter: {error}")
    for desired, differences in plan.changed:
        lines.append(
            f"opportunity {desired.salesforce_opportunity_id}: contract exists; the deal changed "
            f"since ({', '.join(differences)}): needs attention, never edited"
        )
    if plan.pending and customer_id is not None:
        existing = [(d, ctx.contracts.find(d, customer_id)) for d in plan.pending]
    else:
        existing = [(d, None) for d in plan.pending]
    for desired, found in existing:
        opportunity = desired.salesforce_opportunity_id
        if found is not None:
            state = "archived" if found.archived else "exists"
            lines.append(f"opportunity {opportunity}: contract {found.id} {state}; no call")
            continue
        if desired.kind == "renewal":
            lines.append(_renewal_line(ctx, desired, customer_id))
        end = desired.ending_before or "evergreen"
        billing = desired.billing_provider or "no billing provider"
        commits = sum(c.amount_cents for c in desired.commits)
        lines.append(
            f"opportunity {opportunity}: contracts/create {desired.pricing}="
            f"{desired.pricing_value} from {desired.starting_at} to {end}, {billing}"
            + (f", commits {commits} cents" if desired.commits else "")
            + _terms(desired.line_terms)
            + f" (uniqueness_key {desired.uniqueness_key})"
        )
    for item in plan.edits:
        lines.append(_edit_line(ctx, item.edit, customer_id))
    return lines


def _terms(terms: LineTerms) -> str:
    counts = [
        f"{len(getattr(terms, name))} {name.replace('_', ' ')}"
        for name in (
            "subscriptions",
            "commits",
            "recurring_commits",
            "overrides",
            "scheduled_charges",
        )
        if getattr(terms, name)
    ]
    return f", line items: {', '.join(counts)}" if counts else ""


def _renewal_line(ctx: ContractContext, desired: DesiredContract, customer_id: str | None) -> str:
    opportunity = desired.salesforce_opportunity_id
    if customer_id is None:
        return f"opportunity {opportunity}: renewal of {desired.parent_opportunity_id or '?'}"
    target = find_target(
        ctx,
        customer_id,
        parent=desired.parent_opportunity_id,
        on=desired.starting_at,
        exclude_key=desired.uniqueness_key,
        ending_on_counts=True,
    )
    if target.contract_id is None:
        return f"opportunity {opportunity}: renewal: needs attention ({target.why})"
    start = "where it ends" if desired.follows_renewed else f"on {desired.starting_at}"
    return (
        f"opportunity {opportunity}: renewal: contracts/create with transition RENEWAL from "
        f"{target.contract_id}, starting {start}"
    )


def _edit_line(ctx: ContractContext, edit: DesiredEdit, customer_id: str | None) -> str:
    opportunity = edit.salesforce_opportunity_id
    what = _terms(edit.line_terms).removeprefix(", line items: ")
    if customer_id is None:
        return f"opportunity {opportunity}: expansion: contracts/edit adding {what}"
    target = find_target(ctx, customer_id, parent=edit.parent_opportunity_id, on=edit.starting_at)
    if target.contract_id is None:
        return f"opportunity {opportunity}: expansion: needs attention ({target.why})"
    return (
        f"opportunity {opportunity}: expansion: contracts/edit of {target.contract_id} from "
        f"{edit.starting_at} adding {what} (uniqueness_key {edit.uniqueness_key})"
    )
