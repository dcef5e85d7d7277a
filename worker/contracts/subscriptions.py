"""A contract's subscription ids, for an expansion's seat lines: known without a call in the
normal case, read once when not.

``v2/contracts/edit`` changes a subscription's quantity only by its id
(``update_subscriptions[].subscription_id``, required; ``temporary_id`` names a subscription
only within the payload that adds it), so a seat line on a product and frequency the contract
already subscribes to needs that id. Where it comes from, cheapest first:

1. the contract list the expansion's contract was just found in (already read: fresh);
2. Redis (:meth:`~worker.state.keys.Keys.contract_subscriptions`), learnt from Metronome's own
   answers: the create's (``data.contract``, when the answer carries it), a list's, or the
   read below;
3. one read of the contract (``POST /v2/contracts/get``): the API is the truth, so a missing
   record (a FLUSHALL, a create answer without the contract) costs this read once, and what
   it shows is remembered for the next expansion.

crmsync's own edits keep the record true: before an edit that adds a subscription the record
is dropped (the new subscription's id is unknown until read), so a crash between the edit and
anything after it leaves "unknown", never a record missing a subscription; an edit that only
changes quantities changes no id. A subscription someone adds to the contract by hand after
crmsync learnt its subscriptions is not in the record: a seat line on that product then adds a
subscription of its own (the same seats billed, in two subscriptions) -- deleting the record
makes the next expansion read the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from worker.metronome.actual import SubscriptionIds

if TYPE_CHECKING:
    from worker.contracts.context import ContractContext


def known_subscriptions(
    ctx: ContractContext,
    customer_id: str,
    contract_id: str,
    listed: SubscriptionIds | None = None,
) -> SubscriptionIds:
    """The contract's subscription ids by (product id, billing frequency); ``listed`` is
    what the list the contract was found in showed (None: not found by a list)."""
    store = ctx.contract_store
    if listed is not None:
        store.record_subscriptions(contract_id, listed)
        return listed
    known = store.subscriptions(contract_id)
    if known is not None:
        return known
    read = ctx.gateway.get_contract(customer_id, contract_id).subscriptions
    store.record_subscriptions(contract_id, read)
    return read


def before_edit(ctx: ContractContext, body: Mapping[str, Any]) -> None:
    """An edit adding subscriptions makes the record incomplete: drop it before sending."""
    if body.get("add_subscriptions"):
        ctx.contract_store.forget_subscriptions(str(body["contract_id"]))
