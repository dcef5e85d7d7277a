"""Redis state: fenced poll lock and cursors, dedupe hashes, account locks, ledger, dead letters.

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
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.state.attention import AttentionBook
from worker.state.connections import redis_client
from worker.state.dead_letters import DeadLetter, DeadLetterBook
from worker.state.keys import (
    ACCOUNT_LOCK_TTL_S,
    DELIVERY_COUNT_TTL_S,
    POLL_LOCK_TTL_S,
    Keys,
)
from worker.state.ledger import Ledger

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: cursors hash, fence key. ARGV: fence token, then field/value pairs.
# Writes a field only if the fence is still ours and the new value is later than the old one
# (ISO-8601 UTC strings of one fixed format compare in time order).
_ADVANCE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local moved = 0
for i = 2, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if (not old) or ARGV[i + 1] > old then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""


# KEYS: lock key. ARGV: holder token, lease in ms. Extends the lease only for its holder.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

#: The account lock is a *lease*: held for this long and renewed by its holder every third of
#: it while the sync runs (up to ACCOUNT_LOCK_TTL_S in all). A SIGKILLed or OOM-killed holder
#: stops renewing, so its account is free again within this time, not after the 330 s a fixed
#: TTL needs to outlive the task's hard time limit. Without it, the killed task's own
#: redelivery and every later sync of the account met "lock busy" until they gave up (seen in
#: the chaos run: four closes dead-lettered as transient_exhausted).
ACCOUNT_LOCK_LEASE_S = 15.0
#: The poll lock's lease, renewed the same way (up to POLL_LOCK_TTL_S).
POLL_LOCK_LEASE_S = 30.0

_STATE_FIELDS = ("state_hash", "customer_id", "dead_hash")

_FieldKey = bytes | bytearray | memoryview | str | int | float
_FieldValue = bytes | bytearray | memoryview | str | int | float


class LockBusy(Exception):
    """Another process holds the lock (a concurrent sync of the same account, or a poll)."""


@dataclass(frozen=True, slots=True)
class PollLease:
    token: str
    fence: str


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


@dataclass(slots=True)
class _Lease:
    key: str
    lease_ms: int
    deadline: float
    renew_at: float


class LeaseKeeper:
    """Renews every lease this process holds, from one background thread.

    A thread per lock (started and joined around every sync) cost more CPU than the sync's own
    Redis calls once syncs ran in batches; one long-lived thread that sleeps until the next
    lease is a third gone does the same job. A lease is renewed only while its holder still
    holds it (the Lua script compares tokens), and never past its deadline: a sync that hangs
    that long lets its lease run out.
    """

    def __init__(self, extend: Any) -> None:
        self._extend = extend
        self._leases: dict[str, _Lease] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def hold(self, key: str, token: str, lease_ms: int, ttl_s: float) -> None:
        now = time.monotonic()
        with self._wake:
            self._leases[token] = _Lease(key, lease_ms, now + ttl_s, now + lease_ms / 3000)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # First lease, or a forked child (which inherits no threads).
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="lock-leases", daemon=True)
                self._thread.start()
            self._wake.notify()

    def drop(self, token: str) -> None:
        with self._wake:
            self._leases.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = [(t, lease) for t, lease in self._leases.items() if lease.renew_at <= now]
                if not due:
                    next_at = min((lease.renew_at for lease in self._leases.values()), default=0)
                    self._wake.wait(timeout=max(0.01, next_at - now) if next_at else 60.0)
                    continue
                for _token, lease in due:
                    lease.renew_at = now + lease.lease_ms / 3000
            for token, lease in due:
                self._renew(token, lease, now)

    def _renew(self, token: str, lease: _Lease, now: float) -> None:
        if now >= lease.deadline:
            self.drop(token)  # a holder this slow is hung: let the lease run out
            return
        try:
            if not self._extend(keys=[lease.key], args=[token, lease.lease_ms]):
                self.drop(token)  # lost (expired, or Redis flushed): nothing left to renew
        except redis.RedisError:
            pass  # Redis restarting: try again at the next tick


class SyncStore:
    def __init__(
        self, client: redis.Redis, keys: Keys | None = None, ledger_max_entries: int = 100_000
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.ledger_max_entries = ledger_max_entries
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._leases = LeaseKeeper(self._extend)
        self._advance = client.register_script(_ADVANCE)
        self.ledger_log = Ledger(client, self.keys, ledger_max_entries)
        self.dead_letter_book = DeadLetterBook(client, self.keys, self.ledger_log)
        self.attention = AttentionBook(client, self.keys, self.ledger_log)

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "crmsync", ledger_max_entries: int = 100_000
    ) -> SyncStore:
        client = redis_client(url, decode_responses=True)
        return cls(client, Keys(prefix), ledger_max_entries)

    # --- poll lock and cursors ----------------------------------------------------------
    def acquire_poll_lock(
        self, ttl_s: int = POLL_LOCK_TTL_S, lease_s: float = POLL_LOCK_LEASE_S
    ) -> PollLease | None:
        """The poll lock, as a lease renewed while the poll runs (at most ``ttl_s`` in all).

        A poll whose worker is SIGKILLed stops renewing, so the next poll can start within
        ``lease_s``; a fixed 600 s TTL kept every poll out for ten minutes (chaos run, seed 3:
        a worker killed mid-poll, every beat poll after it "skipped").
        """
        token = secrets.token_hex(16)
        lease_ms = max(1, int(min(float(ttl_s), lease_s) * 1000))
        if not self.client.set(self.keys.poll_lock, token, nx=True, px=lease_ms):
            return None
        fence = str(self.client.incr(self.keys.poll_fence))
        self._start_renewing(self.keys.poll_lock, token, lease_ms, ttl_s)
        return PollLease(token=token, fence=fence)

    def release_poll_lock(self, lease: PollLease) -> None:
        self._stop_renewing(lease.token)
        self._release(keys=[self.keys.poll_lock], args=[lease.token])

    def _start_renewing(self, key: str, token: str, lease_ms: int, ttl_s: float) -> None:
        self._leases.hold(key, token, lease_ms, ttl_s)

    def _stop_renewing(self, token: str) -> None:
        self._leases.drop(token)

    def cursors(self) -> dict[str, str]:
        return cast(dict[str, str], self.client.hgetall(self.keys.cursors))

    def advance_cursors(self, lease: PollLease, values: Mapping[str, str]) -> bool:
        """Move cursors forward; False when a newer poll has taken the fence since."""
        if not values:
            return True
        args: list[str] = [lease.fence]
        for name, value in values.items():
            args += [name, value]
        result = int(self._advance(keys=[self.keys.cursors, self.keys.poll_fence], args=args))
        return result >= 0

    def events_due(self, interval_s: float) -> bool:
        """True at most once per ``interval_s`` (always when it is 0): time to read the
        re-opened-deal and deleted-account streams."""
        if interval_s <= 0:
            return True
        return bool(self.client.set(self.keys.events_check, "1", nx=True, ex=int(interval_s)))

    def record_poll(self, summary: Mapping[str, Any]) -> None:
        self.client.hset(
            self.keys.last_poll, mapping={k: json.dumps(v) for k, v in summary.items()}
        )

    def last_poll(self) -> dict[str, Any]:
        raw = cast(dict[str, str], self.client.hgetall(self.keys.last_poll))
        return {k: json.loads(v) for k, v in raw.items()}

    # --- won opportunities (re-open detection) -------------------------------------------
    def mark_won(self, opportunity_ids: Iterable[str]) -> None:
        ids = list(opportunity_ids)
        if ids:
            self.client.sadd(self.keys.won_opportunities, *ids)

    def forget_won(self, opportunity_ids: Iterable[str]) -> list[str]:
        """Remove ids from the won set; returns those that were in it (the re-opened ones)."""
        ids = list(opportunity_ids)
        if not ids:
            return []
        flags = cast(list[int], self.client.smismember(self.keys.won_opportunities, ids))
        reopened = [i for i, flag in zip(ids, flags, strict=True) if flag]
        if reopened:
            self.client.srem(self.keys.won_opportunities, *reopened)
        return reopened

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
            self._release(keys=[release.key], args=[release.token], client=pipe)
        pipe.execute()
        if release is not None:
            release.released = True

    def remember_customer(self, account_id: str, customer_id: str) -> None:
        self.client.hset(self.keys.account(account_id), "customer_id", customer_id)

    def forget_hash(self, account_id: str) -> None:
        self.client.hdel(self.keys.account(account_id), "state_hash")

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
        token = secrets.token_hex(16)
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
                self._release(keys=[key], args=[token])

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
