"""A deal whose contract cannot be made: its dead letter, once per state of the deal.

A deal that cannot be mapped, or that Metronome refuses, dead-letters with the reason; the
refused state's hash is remembered, so the same state is neither sent nor dead-lettered again.
The customer's sync goes on: one deal never holds back the account's other deals.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from mappings import MappingError
from worker.state.dead_letters import CONTRACT_KIND

if TYPE_CHECKING:
    from worker.contracts.context import ContractContext

log = logging.getLogger(__name__)


def dead_letter(
    ctx: ContractContext,
    account: str,
    *,
    opportunity: str,
    why: str,
    record: dict[str, Any],
    task_id: str,
    state_hash: str,
    trigger: str = "",
) -> None:
    """A dead letter for the deal's contract, once per state of the deal: ``state_hash`` is
    remembered, so the same refused state is not sent (nor dead-lettered) again."""
    ctx.store.dead_letter(
        account_id=account,
        kind=CONTRACT_KIND,
        reason=f"opportunity {opportunity}: {why}",
        task_id=task_id,
        snapshot=record,
        opportunity_id=opportunity,
        trigger=trigger,
    )
    # Its own outcome: the account's sync still ends with one outcome of its own, which is
    # what waiters (`poll --wait`, the demo) count.
    ctx.store.count_outcome("contract_dead_lettered")
    log.warning(
        "dead-lettered the contract of opportunity %s: %s",
        opportunity,
        why,
        extra={"account_id": account, "task_id": task_id},
    )
    ctx.contract_store.mark_dead(opportunity, state_hash)


def failure_hash(exc: MappingError) -> str:
    """What identifies a refused state: the same error text is the same state."""
    return hashlib.sha256(str(exc).encode("utf-8")).hexdigest()
