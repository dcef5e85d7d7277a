"""Redis state of won opportunities and their contracts (key: :meth:`Keys.opportunity`).

A saving, never the truth: with the contract id and the hash of the desired contract it was
made from, an unchanged deal costs zero Metronome calls on later polls; without them (a
FLUSHALL) the next sync's create is refused by the uniqueness key and the engine finds the
contract again. The ``attention_hash`` and ``dead_hash`` fields make "needs attention" and
a bad deal's dead letter appear once per distinct state, not once per poll.

Beside it, per contract (key: :meth:`Keys.contract_subscriptions`), the ids of the contract's
subscriptions by product and billing frequency, as Metronome's answers showed them: what a
seat expansion's quantity update needs, so it costs the edit alone. Trusted only for the
subscriptions it names: missing, or not naming the one a seat line needs, one read of the
contract tells.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from worker.state.keys import Keys

_FIELDS = ("contract_id", "contract_hash", "contract", "attention_hash", "dead_hash")
#: (product id, billing frequency) -> subscription id.
SubscriptionIds = dict[tuple[str, str], str]


@dataclass(frozen=True, slots=True)
class OpportunityState:
    contract_id: str | None = None
    contract_hash: str | None = None
    #: The canonical desired contract the contract was made from (JSON), to say what differs.
    contract: dict[str, Any] | None = None
    attention_hash: str | None = None
    dead_hash: str | None = None


class ContractStore:
    """Reads and writes the per-opportunity hash; one round trip per batch of deals."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def states(self, opportunity_ids: Iterable[str]) -> dict[str, OpportunityState]:
        ids = list(dict.fromkeys(opportunity_ids))
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for opportunity in ids:
            pipe.hmget(self.keys.opportunity(opportunity), list(_FIELDS))
        rows = cast(list[list[str | None]], pipe.execute())
        return {opportunity: _state(row) for opportunity, row in zip(ids, rows, strict=True)}

    def record_contract(
        self,
        opportunity_id: str,
        *,
        contract_id: str,
        customer_id: str,
        contract_hash: str,
        canonical: Mapping[str, Any],
        subscriptions: SubscriptionIds | None = None,
    ) -> None:
        """The contract exists for this deal (made or adopted), made from ``canonical``; with
        ``subscriptions`` when the answer that made or found it showed them."""
        key = self.keys.opportunity(opportunity_id)
        pipe = self.client.pipeline(transaction=True)
        if subscriptions:
            pipe.set(self.keys.contract_subscriptions(contract_id), _dump(subscriptions))
        pipe.hset(
            key,
            mapping={
                "contract_id": contract_id,
                "customer_id": customer_id,
                "contract_hash": contract_hash,
                "contract": json.dumps(canonical, sort_keys=True),
                "synced_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        pipe.hdel(key, "dead_hash", "attention_hash")
        pipe.execute()

    def subscriptions(self, contract_id: str) -> SubscriptionIds | None:
        """The contract's subscription ids as last learnt; None when unknown."""
        raw = self.client.get(self.keys.contract_subscriptions(contract_id))
        return None if raw is None else _load(raw)

    def record_subscriptions(self, contract_id: str, subscriptions: SubscriptionIds) -> None:
        """What an answer showed; none is not written (a record is trusted only for what it
        names, so an empty one would save nothing)."""
        if subscriptions:
            self.client.set(self.keys.contract_subscriptions(contract_id), _dump(subscriptions))

    def mark_attention(self, opportunity_id: str, contract_hash: str) -> None:
        self.client.hset(self.keys.opportunity(opportunity_id), "attention_hash", contract_hash)

    def mark_dead(self, opportunity_id: str, bad_hash: str) -> None:
        self.client.hset(self.keys.opportunity(opportunity_id), "dead_hash", bad_hash)


def _state(row: list[str | None]) -> OpportunityState:
    contract_id, contract_hash, contract, attention_hash, dead_hash = row
    parsed: dict[str, Any] | None = None
    if contract:
        try:
            loaded = json.loads(contract)
        except ValueError:
            loaded = None
        parsed = loaded if isinstance(loaded, dict) else None
    return OpportunityState(contract_id, contract_hash, parsed, attention_hash, dead_hash)


def _dump(subscriptions: SubscriptionIds) -> str:
    flat = {f"{product} {frequency}": sid for (product, frequency), sid in subscriptions.items()}
    return json.dumps(flat, sort_keys=True)


def _load(raw: str | bytes) -> SubscriptionIds | None:
    """The stored map; None (unknown: read again) when it is not one we wrote."""
    try:
        loaded = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(loaded, dict):
        return None
    out: SubscriptionIds = {}
    for key, value in loaded.items():
        product, _, frequency = str(key).partition(" ")
        if not product or not frequency or not isinstance(value, str):
            return None
        out[(product, frequency)] = value
    return out
