"""A contract's subscription ids, for an expansion's seat lines: known without a call in the
normal case, read once when not.

``v2/contracts/edit`` changes a subscription's quantity only by its id
(``update_subscriptions[].subscription_id``, required; ``temporary_id`` names a subscription
only within the payload that adds it), so a seat line on a product and frequency the contract
already subscribes to needs that id. Where it comes from, cheapest first:

1. the contract list the expansion's contract was just found in (already read: fresh);
2. Redis (:meth:`~worker.state.keys.Keys.contract_subscriptions`), learnt from Metronome's own
   answers: the create's (``data.contract``, when the answer carries it), a list's, an
   edit's (``data.edit.add_subscriptions``, likewise), or the read below -- trusted only for
   the subscriptions it names;
3. one read of the contract (``POST /v2/contracts/get``): the API is the truth, so a missing
   record (a FLUSHALL, a create answer without the contract) costs this read once, and what
   it shows is remembered for the next expansion.

Only a *named* subscription is taken from the record: an id, once given, names that
subscription for good (an edit can end one, ``update_subscriptions[].ending_before``, but has
no way to remove one). A seat line whose product and frequency the record does not name may
still be a subscription the record does not know -- added by an expansion whose answer did
not name it, by hand, or in a write a Redis failover lost -- so it costs the read rather than
a guess: a second subscription for seats the contract already bills is never made from a
stale record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mappings.contracts.terms import DesiredSubscription
from worker.metronome.actual import SubscriptionIds

if TYPE_CHECKING:
    from worker.contracts.context import ContractContext


def known_subscriptions(
    ctx: ContractContext,
    customer_id: str,
    contract_id: str,
    seats: Sequence[DesiredSubscription],
    listed: SubscriptionIds | None = None,
) -> SubscriptionIds:
    """The contract's subscription ids by (product id, billing frequency), naming every one
    the expansion's ``seats`` may update; ``listed`` is what the list the contract was just
    found in showed (None: it was not found by a list). No seat line, no id needed: {}."""
    if not seats:
        return {}
    wanted = [(seat.product_id, seat.billing_frequency) for seat in seats]
    store = ctx.contract_store
    if listed is not None:
        store.record_subscriptions(contract_id, listed)
        return listed
    known = store.subscriptions(contract_id)
    if known is not None and all(key in known for key in wanted):
        return known
    read = ctx.gateway.get_contract(customer_id, contract_id).subscriptions
    store.record_subscriptions(contract_id, read)
    return read


def remember_added(ctx: ContractContext, contract_id: str, added: SubscriptionIds | None) -> None:
    """An edit's answer named the subscriptions it added: the next seat line on one of them
    needs no read. Merged into what is known (a record naming only these is still right)."""
    if added:
        store = ctx.contract_store
        store.record_subscriptions(
            contract_id, {**(store.subscriptions(contract_id) or {}), **added}
        )
