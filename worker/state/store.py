"""Redis state: dedupe hashes, account locks, the drain lock, ledger, dead letters (and, from
worker/state/polls.py, the fenced poll lock and cursors).

Key names and their lifetimes are in :mod:`worker.state.keys`. The ledger's index
(:mod:`worker.state.ledger`), grouped dead letters
(:mod:`worker.state.dead_letters`) and "needs attention"
items (:mod:`worker.state.attention`) are modules of their own; the store holds one of each.
Every compare-and-set is a Lua script so it is atomic on the server: a lock is released or
extended only by its holder, and the cursor only moves forward, only for the poll that still
holds the newest fencing token.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.state.attention import AttentionBook
from worker.state.dead_letters import DeadLetter, DeadLetterBook
from worker.state.keys import (
    ACCOUNT_LOCK_TTL_S,
    DELIVERY_COUNT_TTL_S,
    DRAIN_LOCK_TTL_S,
    Keys,
)
from worker.state.ledger import Ledger
from worker.state.locks import LeaseKeeper, TokenLocks, new_token
from worker.state.polls import ADVANCE_CURSORS, PollLease, PollState
from worker.state.rate import GovernorState, rate_state

#: The account lock is a *lease*: held for this long and renewed by its holder every third of
#: it while the sync runs (up to ACCOUNT_LOCK_TTL_S in all). A SIGKILLed or OOM-killed holder
#: stops renewing, so its account is free again within this time, not after the 330 s a fixed
#: TTL needs to outlive the task's hard time limit. Without it, the killed task's own
#: redelivery and every later sync of the account met "lock busy" until they gave up (seen in
#: the chaos run: four closes dead-lettered as transient_exhausted).
ACCOUNT_LOCK_LEASE_S = 15.0

_STATE_FIELDS = ("state_hash", "customer_id", "dead_hash")

_FieldKey = bytes | bytearray | memoryview | str | int | float
_FieldValue = bytes | bytearray | memoryview | str | int | float


class LockBusy(Exception):
    """Another process holds the lock (a concurrent sync of the same account, or a poll)."""


@dataclass(slots=True)
class HeldLock:
    """An account lock this process holds, and what was read when it was taken."""

    key: str
    token: str
    generation: int
    customer_id: str | None = None
    #: SystemModstamp of the snapshot last applied to the synced account (worker.salesforce.
    #: stamps): an older snapshot must not overwrite it.
    applied_stamp: str | None = None
    released: bool = False


@dataclass(frozen=True, slots=True)
class AccountState:
    state_hash: str | None
    customer_id: str | None
    #: Hash of the snapshot last dead-lettered as refused (mapping or Metronome): the same
    #: snapshot read again (the poll's overlap) is not sent again until it changes.
    dead_hash: str | None = None


__all__ = ["AccountState", "DeadLetter", "HeldLock", "LockBusy", "PollLease", "SyncStore"]


class SyncStore(PollState):
    """Every piece of a sync's Redis state the jobs read and write (the poll's part:
    worker/state/polls.py)."""

    def __init__(
        self, client: redis.Redis, keys: Keys | None = None, ledger_max_entries: int = 100_000
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.ledger_max_entries = ledger_max_entries
        self.locks = TokenLocks(client)
        self._leases = LeaseKeeper(self.locks)
        self._advance = client.register_script(ADVANCE_CURSORS)
        self.ledger_log = Ledger(client, self.keys, ledger_max_entries)
        self.dead_letter_book = DeadLetterBook(client, self.keys, self.ledger_log)
        self.attention = AttentionBook(client, self.keys, self.ledger_log)

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "crmsync", ledger_max_entries: int = 100_000
    ) -> SyncStore:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=30,
            socket_connect_timeout=10,
            health_check_interval=25,
            retry_on_timeout=True,
        )
        return cls(client, Keys(prefix), ledger_max_entries)

    # --- the drain of parked syncs ------------------------------------------------------
    def take_drain_lock(self) -> str | None:
        """One drain at a time: the holder's token, or None while another drain runs."""
        token = new_token(8)
        taken = self.locks.take(self.keys.drain_lock, token, ttl_s=DRAIN_LOCK_TTL_S)
        return token if taken else None

    def release_drain_lock(self, token: str) -> None:
        self.locks.release(self.keys.drain_lock, token)

    def drained_all_at(self) -> float | None:
        """``closed_at`` (ms) of the breaker recovery after which every parked sync was sent."""
        marker = self.client.get(self.keys.parked_drained_all)
        return None if marker is None else float(str(marker))

    def mark_drained_all(self, closed_at_ms: float) -> None:
        self.client.set(self.keys.parked_drained_all, repr(closed_at_ms))

    def queued_messages(self, queue: str) -> int:
        """Messages waiting in the broker's ``queue`` (the same Redis)."""
        return int(self.client.llen(queue))

    def parked_count(self) -> int:
        """Syncs waiting in the parking for an API to come back."""
        return int(self.client.hlen(self.keys.parked_items))

    def governor_state(self) -> GovernorState | None:
        """The Metronome rate governor's shared state (None before its first request)."""
        return rate_state(self.client, self.keys)

    # --- alerts: each claimed once across every worker -------------------------------------
    def claim_alert(self, name: str, ttl_s: int) -> bool:
        """True for the one worker that claims alert ``name`` first (``SET NX``)."""
        return bool(self.client.set(self.keys.alerted(name), "1", nx=True, ex=ttl_s))

    def clear_alert(self, name: str) -> bool:
        """Forget alert ``name``'s claim; True when there was one (the alert was raised)."""
        return bool(self.client.delete(self.keys.alerted(name)))

    # --- accounts ----------------------------------------------------------------------
    def account_state(self, account_id: str) -> AccountState:
        raw = cast(
            list[str | None],
            self.client.hmget(self.keys.account(account_id), list(_STATE_FIELDS)),
        )
        return AccountState(*raw)

    def account_states(self, account_ids: Iterable[str]) -> dict[str, AccountState]:
        """Many accounts' states in one round trip (a poll chunk, a sync batch)."""
        ids = list(dict.fromkeys(account_ids))
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for account_id in ids:
            pipe.hmget(self.keys.account(account_id), list(_STATE_FIELDS))
        rows = cast(list[list[str | None]], pipe.execute())
        return {account_id: AccountState(*row) for account_id, row in zip(ids, rows, strict=True)}

    def finish_sync(
        self,
        account_id: str,
        *,
        state_hash: str,
        customer_id: str,
        owner_account_id: str,
        outcome: str,
        ledger_entry: Mapping[str, Any],
        release: HeldLock | None = None,
        snapshot_stamp: str | None = None,
        count: bool = True,
    ) -> None:
        """Everything a converged sync records, in one round trip: the dedupe hash and customer
        id (and the roll-up owner's), the bad-record marker cleared, the outcome counted, the
        ledger entry, and (``release``) the account lock. One MULTI, so a reader never sees
        the hash without its ledger line, and the lock is free only once all of it is written."""
        key = self.keys.account(account_id)
        pipe = self.client.pipeline(transaction=True)
        applied: dict[_FieldKey, _FieldValue] = {
            "state_hash": state_hash,
            "customer_id": customer_id,
            "synced_at": _now_iso(),
        }
        if snapshot_stamp is not None:
            applied["snapshot_stamp"] = snapshot_stamp
        pipe.hset(key, mapping=applied)
        pipe.hdel(key, "dead_hash")
        if owner_account_id != account_id:
            pipe.hset(self.keys.account(owner_account_id), "customer_id", customer_id)
        if count:  # False: the caller counts once more work under the lock is done
            pipe.hincrby(self.keys.outcomes, outcome, 1)
        self.ledger_log.append(ledger_entry, client=pipe)
        self.dead_letter_book.resolve(
            account_id, by=str(ledger_entry.get("task_id", "")), how=outcome, client=pipe
        )
        if release is not None:
            self._stop_renewing(release.token)
            self.locks.release(release.key, release.token, client=pipe)
        pipe.execute()
        if release is not None:
            release.released = True

    def account_fields(self, account_id: str, *fields: str) -> list[str | None]:
        """Fields of the account's record hash (``customer_id``, ``synced_at``...), in order."""
        key = self.keys.account(account_id)
        return cast(list[str | None], self.client.hmget(key, list(fields)))

    def opportunity_fields(self, opportunity_id: str, *fields: str) -> list[str | None]:
        """Fields of the opportunity's record hash (``contract_id``...), in order."""
        key = self.keys.opportunity(opportunity_id)
        return cast(list[str | None], self.client.hmget(key, list(fields)))

    def remember_customer(self, account_id: str, customer_id: str) -> None:
        self.client.hset(self.keys.account(account_id), "customer_id", customer_id)

    def forget_hash(self, account_id: str) -> None:
        self.client.hdel(self.keys.account(account_id), "state_hash")

    def dead_hash(self, account_id: str) -> str | None:
        """The hash of the account's snapshot last refused (dead-lettered), if any."""
        return cast("str | None", self.client.hget(self.keys.account(account_id), "dead_hash"))

    def remember_dead_hash(self, account_id: str, snapshot_hash: str) -> None:
        """The snapshot is refused as it stands: not sent again until it changes."""
        self.client.hset(self.keys.account(account_id), "dead_hash", snapshot_hash)

    @contextlib.contextmanager
    def account_lock(
        self,
        account_id: str,
        ttl_s: int = ACCOUNT_LOCK_TTL_S,
        lease_s: float = ACCOUNT_LOCK_LEASE_S,
        *,
        stamp_of: str | None = None,
    ) -> Iterator[HeldLock]:
        """Exclusive per-account lease, renewed in the background while the body runs (at most
        ``ttl_s`` in all); raises LockBusy when another holder has it.

        The same round trip reads the account's idempotency generation and customer id: under
        the lock neither can change behind us (a state read before it may be stale: another
        account of the same roll-up owner may have created the customer since), and the stamp
        of the snapshot last applied to ``stamp_of`` (the synced account; its syncs all take
        this lock), and ``finish_sync`` can
        release the lock in its own round trip: a sync costs two Redis round trips for lock,
        generation, record and release, not five.
        """
        key = self.keys.account_lock(account_id)
        token = new_token()
        lease_ms = max(1, int(min(float(ttl_s), lease_s) * 1000))
        pipe = self.client.pipeline(transaction=False)
        pipe.set(key, token, nx=True, px=lease_ms)
        pipe.get(self.keys.idempotency_generation(account_id))
        pipe.hget(self.keys.account(account_id), "customer_id")
        pipe.hget(self.keys.account(stamp_of or account_id), "snapshot_stamp")
        acquired, generation, customer_id, applied_stamp = pipe.execute()
        if not acquired:
            raise LockBusy(f"account {account_id} is being synced by another task")
        held = HeldLock(
            key=key,
            token=token,
            generation=int(generation) if generation else 0,
            customer_id=customer_id or None,
            applied_stamp=applied_stamp or None,
        )
        self._start_renewing(key, token, lease_ms, ttl_s)
        try:
            yield held
        finally:
            self._stop_renewing(token)
            if not held.released:
                self.locks.release(key, token)

    def lock_remaining_s(self, account_id: str) -> float:
        """Seconds until the account's lock lease runs out (0 when it is free)."""
        remaining = int(self.client.pttl(self.keys.account_lock(account_id)))
        return max(0.0, remaining / 1000)

    def count_lock_wait(self, task_id: str) -> int:
        """How many times this task found its account locked; those retries are waits, not
        failures, so they do not use up the task's retry budget."""
        key = self.keys.lock_wait_count(task_id)
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, DELIVERY_COUNT_TTL_S)
        count, _ = pipe.execute()
        return int(count)

    def lock_waits(self, task_id: str) -> int:
        value = self.client.get(self.keys.lock_wait_count(task_id))
        return int(cast(str, value)) if value else 0

    # --- idempotency generations (the IdempotencyGenerations protocol) -------------------
    def current(self, account_id: str) -> int:
        value = self.client.get(self.keys.idempotency_generation(account_id))
        return int(cast(str, value)) if value else 0

    def bump(self, account_id: str) -> int:
        return int(self.client.incr(self.keys.idempotency_generation(account_id)))

    # --- deliveries --------------------------------------------------------------------
    def count_delivery(self, task_id: str, attempt: int) -> int:
        key = self.keys.delivery_count(task_id, attempt)
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, DELIVERY_COUNT_TTL_S)
        count, _ = pipe.execute()
        return int(count)

    # --- ledger, dead letters, outcomes ---------------------------------------------------
    def append_ledger(self, entry: Mapping[str, Any]) -> str:
        return str(self.ledger_log.append(entry))

    def ledger(self, count: int = 100) -> list[dict[str, str]]:
        rows = cast(
            list[tuple[str, dict[str, str]]], self.client.xrevrange(self.keys.ledger, count=count)
        )
        return [{"id": entry_id, **fields} for entry_id, fields in rows]

    def dead_letter(
        self,
        *,
        account_id: str,
        kind: str,
        reason: str,
        task_id: str,
        snapshot: Mapping[str, Any] | None,
        opportunity_id: str = "",
        trigger: str = "",
    ) -> str:
        """Count a failed attempt in its dead-letter group (state.dead_letters); the group id."""
        return self.dead_letter_book.record(
            account_id=account_id,
            kind=kind,
            reason=reason,
            task_id=task_id,
            snapshot=snapshot,
            opportunity_id=opportunity_id,
            trigger=trigger,
        ).group_id

    def dead_letters(self, count: int = 1000) -> list[DeadLetter]:
        """The open dead-letter groups, oldest first (at most the newest ``count``)."""
        return self.dead_letter_book.groups(limit=count)

    def delete_dead_letter(self, entry_id: str) -> None:
        self.dead_letter_book.delete(entry_id)

    def count_outcome(self, outcome: str, amount: int = 1) -> None:
        self.client.hincrby(self.keys.outcomes, outcome, amount)

    def outcomes(self) -> dict[str, int]:
        raw = cast(dict[str, str], self.client.hgetall(self.keys.outcomes))
        return {k: int(v) for k, v in raw.items()}


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
