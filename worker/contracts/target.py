"""Which contract a later deal changes: the one its parent deal made, or the account's live one.

A deal that names the deal it expands or renews (a lookup field) changes that deal's contract:
known from Redis (no call), else found by its uniqueness key or opportunity custom field in the
customer's contract list. A deal that names none changes the account's one live contract on its
start date. None, or several: the :class:`Target` carries the candidates and why, for "needs
attention" -- never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mappings.contracts.desired import OPPORTUNITY_FIELD, uniqueness_key
from worker.metronome.actual import ContractState, SubscriptionIds

if TYPE_CHECKING:
    from worker.contracts.context import ContractContext


@dataclass(frozen=True, slots=True)
class Target:
    """The contract a deal changes, or the candidates when there is not exactly one."""

    contract_id: str | None
    ending_before: str | None = None
    candidates: tuple[str, ...] = ()
    why: str = ""
    #: Its subscriptions' ids when it was found in a list (which shows them), else None.
    subscriptions: SubscriptionIds | None = None


def utc_instant(text: str | None) -> datetime | None:
    """An ISO-8601 instant (``Z`` or offset) as an aware UTC datetime; None stays None."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def find_target(
    ctx: ContractContext,
    customer_id: str,
    *,
    parent: str | None,
    on: str,
    exclude_key: str | None = None,
    ending_on_counts: bool = False,
) -> Target:
    """The contract a deal changes (see the module docstring); ``on`` is the deal's start.
    ``ending_on_counts``: a contract ending exactly on ``on`` is live too (a renewal starts
    where the renewed contract ends)."""
    if parent is not None:
        state = ctx.contract_store.states([parent])[parent]
        ending = (state.contract or {}).get("ending_before")
        if state.contract_id is not None and (isinstance(ending, str) or not ending_on_counts):
            return Target(state.contract_id, ending if isinstance(ending, str) else None)
        # A renewal needs the renewed contract's end, and a parent deal that was an expansion
        # remembers its edit, which holds no dates: Metronome's contract says where it ends.
        known = state.contract_id
        for contract in ctx.gateway.list_contracts(customer_id):
            if (
                contract.id == known
                or contract.uniqueness_key == uniqueness_key(parent)
                or (contract.custom_fields.get(OPPORTUNITY_FIELD) == parent)
            ):
                return Target(
                    contract.id, contract.ending_before, subscriptions=contract.subscriptions
                )
        return Target(None, why=f"the customer has no contract for opportunity {parent}")
    moment = utc_instant(on)
    live = [
        c
        for c in ctx.gateway.list_contracts(customer_id)
        if not c.archived
        and c.uniqueness_key != exclude_key
        and _covers(c, moment, ending_on_counts)
    ]
    if len(live) == 1:
        return Target(live[0].id, live[0].ending_before, subscriptions=live[0].subscriptions)
    what = "no live contract" if not live else f"{len(live)} live contracts"
    return Target(
        None, candidates=tuple(c.id for c in live), why=f"the customer has {what} on {on}"
    )


def _covers(contract: ContractState, moment: datetime | None, ending_on_counts: bool) -> bool:
    start, end = utc_instant(contract.starting_at), utc_instant(contract.ending_before)
    if moment is None or start is None or start > moment:
        return False
    return end is None or moment < end or (ending_on_counts and moment == end)
