"""Parked syncs: work that failed for a transient reason waits here, durably, until the API
is back -- never in a dead letter, never in a long countdown.

A dead letter means "a person must fix this"; an outage of Metronome is not that, and a
retry countdown long enough to outlast one is delivered twice by the Redis broker (a
countdown must stay far under the visibility timeout). So a sync whose quick retries are spent,
or that meets an open circuit breaker, is *parked* (``tasks/sync.py``) and the drain
(``tasks/parked.py``) sends it again when it is due:

- four keys (``worker/state/keys.py``, kept by ``worker/state/parking.py``): a hash of the
  parked syncs as JSON -- the account's newest snapshot, why it was parked (which call, which
  answer), since, attempts --, a sorted set of those waiting by next attempt, one of those
  sent (their replay on its way) by when they may be sent again, and one by first park (the
  oldest, the expiry);
- one entry per account: parking a second snapshot of a parked account merges the two
  (:func:`merge_snapshots`): the newer one wins, and every won deal either carried is kept,
  so no contract is lost with the older one; applying stays guarded by the snapshot stamps;
- the backoff doubles from PARK_BACKOFF_BASE_S up to CRMSYNC_PARK_BACKOFF_MAX_S (minutes);
  after a breaker closes every parked sync is sent at once, due or not;
- a sent sync is not removed, only moved to the sent set: only a replay that ends (synced,
  or a dead letter) removes it, and only if no newer snapshot was parked meanwhile. A replay
  lost for good (its message gone with Redis data) is sent again once its lease ran out *and
  the queue is empty* (``tasks/parked.py``): with a backlog queued, a lease cannot tell a lost
  message from a waiting one, and re-sending every waiting one would only double the backlog
  (seen in the chaos run: 750 duplicates queued behind 965 replays). A replay whose worker
  was killed comes back from the broker (acks_late), parked or not;
- parked for CRMSYNC_PARK_MAX_AGE_S (24 h: Metronome keeps an Idempotency-Key's answer that
  long) and still failing, it becomes a dead letter.

Durable as Redis is: AOF keeps it across restarts. After a FLUSHALL the poll's cursors are
gone with it, so the next poll reads every won deal again and whatever still fails parks again.

Writes are compare-and-set on the item's JSON (a small Lua script in worker/state/parking.py),
so two syncs of one account parking at once never lose either snapshot; the merge itself is
Python (pure), so the record is never re-encoded by Lua's JSON.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mappings.contracts.engine import WON_OPPORTUNITIES_KEY
from worker.salesforce.stamps import snapshot_stamp
from worker.state.parking import ParkedStore

if TYPE_CHECKING:
    import redis

    from worker.settings import Settings
    from worker.state.keys import Keys

#: The first wait of a parked sync (seconds); it doubles with each attempt up to the cap.
PARK_BACKOFF_BASE_S = 5.0
#: Attempts to win the compare-and-set against another sync parking the same account.
CAS_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class ParkedSync:
    """One parked account: its newest snapshot and why it waits."""

    account_id: str
    record: dict[str, Any]
    #: Why it was parked last: the call and the answer (or the open breaker).
    reason: str
    #: When it was first parked, and how often since (epoch seconds).
    since: float
    attempts: int
    #: The sync's own settings, kept for the replay.
    force: bool = False
    sync_reason: str = "poll"
    task_id: str = ""
    stamp: str | None = None
    #: When it is due next (epoch seconds; from the sorted set, not stored in the JSON).
    next_at: float | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("next_at")
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str, next_at: float | None = None) -> ParkedSync:
        data = json.loads(raw)
        return cls(
            account_id=str(data["account_id"]),
            record=dict(data["record"]),
            reason=str(data.get("reason", "")),
            since=float(data["since"]),
            attempts=int(data.get("attempts", 1)),
            force=bool(data.get("force", False)),
            sync_reason=str(data.get("sync_reason", "poll")),
            task_id=str(data.get("task_id", "")),
            stamp=data.get("stamp"),
            next_at=next_at,
        )

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.since)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """What ``crmsync status`` and ``crmsync parked list`` show (no snapshot)."""
        moment = time.time() if now is None else now
        return {
            "account_id": self.account_id,
            "since": _iso(self.since),
            "age_s": round(self.age_s(moment), 1),
            "attempts": self.attempts,
            "next_in_s": None if self.next_at is None else round(max(0.0, self.next_at - moment)),
            "reason": self.reason,
            "opportunity_id": self.record.get("Id"),
        }


class Parking:
    """The parked syncs of the deployment: when each is due, merged and expired (the policy);
    worker/state/parking.py keeps them in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        backoff_max_s: float = 300.0,
        max_age_s: float = 86_400.0,
        base_s: float = PARK_BACKOFF_BASE_S,
    ) -> None:
        self.parked = ParkedStore(client, keys)
        self.backoff_max_s = backoff_max_s
        self.max_age_s = max_age_s
        self.base_s = min(base_s, backoff_max_s)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis, keys: Keys) -> Parking:
        return cls(
            client,
            keys,
            backoff_max_s=settings.park_backoff_max_s,
            max_age_s=settings.park_max_age_s,
        )

    # -- writing -----------------------------------------------------------------------------

    def park(
        self,
        account_id: str,
        record: dict[str, Any],
        *,
        reason: str,
        force: bool = False,
        sync_reason: str = "poll",
        task_id: str = "",
        now: float | None = None,
    ) -> ParkedSync:
        """Park (or park again) one account's sync; returns the item as stored.

        A parked account keeps its first ``since`` and counts attempts; its snapshot becomes
        the merge of the stored and the new one (:func:`merge_snapshots`)."""
        moment = time.time() if now is None else now
        for _ in range(CAS_ATTEMPTS):
            raw = self.parked.raw(account_id)
            old = ParkedSync.from_json(raw) if raw else None
            merged = merge_snapshots(old.record, record) if old is not None else record
            attempts = (old.attempts if old is not None else 0) + 1
            item = ParkedSync(
                account_id=account_id,
                record=merged,
                reason=reason[:1000],
                since=old.since if old is not None else moment,
                attempts=attempts,
                force=force or (old.force if old is not None else False),
                # A replay keeps the reason the sync first had (poll, resync, redrive).
                sync_reason=old.sync_reason if old is not None else sync_reason,
                task_id=task_id,
                stamp=snapshot_stamp(merged),
                next_at=moment + self.backoff_s(attempts),
            )
            if self._write(account_id, raw or "", item):
                return item
        raise RuntimeError(f"could not park account {account_id}: it kept changing")

    def backoff_s(self, attempts: int) -> float:
        """Full-jitter doubling from ``base_s`` (attempt 1) up to ``backoff_max_s``."""
        ceiling = min(self.backoff_max_s, self.base_s * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto

    def expired(self, item: ParkedSync, now: float | None = None) -> bool:
        """Parked longer than CRMSYNC_PARK_MAX_AGE_S: time for a dead letter."""
        return item.age_s(now) >= self.max_age_s

    def finish(self, account_id: str, record: dict[str, Any]) -> bool:
        """The replay of ``record`` ended (synced, or a dead letter): remove the parked sync,
        unless a newer snapshot was parked meanwhile (it waits again: :meth:`park`)."""
        for _ in range(CAS_ATTEMPTS):
            raw = self.parked.raw(account_id)
            if not raw:
                return False
            if _canonical(ParkedSync.from_json(raw).record) != _canonical(record):
                self.make_due([account_id])  # the newer one: due at once
                return False
            if self.parked.delete(account_id, raw):
                return True
        return False

    def remove(self, account_id: str) -> bool:
        """Forget a parked sync whatever it holds (it became a dead letter)."""
        raw = self.parked.raw(account_id)
        if not raw:
            return False
        return self.parked.delete(account_id, raw)

    def make_due(self, account_ids: Iterable[str] | None = None) -> list[str]:
        """Due now: the given accounts (those of them parked, waiting or sent), or every
        parked sync. Returns the accounts made due."""
        ids = self.parked.accounts() if account_ids is None else list(dict.fromkeys(account_ids))
        if not ids:
            return []
        return self.parked.make_due(ids, time.time())

    # -- the drain -----------------------------------------------------------------------

    def claim(self, *, limit: int, lease_s: float, due_by: float | None = None) -> list[ParkedSync]:
        """Up to ``limit`` waiting parked syncs due by ``due_by`` (now by default; ``inf``:
        all of them), soonest due first, moved to the sent set with a lease of ``lease_s``;
        they leave the parking only when their replay ends (:meth:`finish`)."""
        return self._take(sent=False, limit=limit, lease_s=lease_s, due_by=due_by)

    def reclaim(self, *, limit: int, lease_s: float) -> list[ParkedSync]:
        """Sent parked syncs whose lease ran out and whose replay never ended: to send again
        (only when the queue is empty: see the module docstring)."""
        return self._take(sent=True, limit=limit, lease_s=lease_s, due_by=None)

    def _take(
        self, *, sent: bool, limit: int, lease_s: float, due_by: float | None
    ) -> list[ParkedSync]:
        moment = time.time()
        bound = "+inf" if due_by == float("inf") else repr(moment if due_by is None else due_by)
        taken = self.parked.take(sent=sent, bound=bound, limit=limit, lease_end=moment + lease_s)
        return [ParkedSync.from_json(raw, moment + lease_s) for _account, raw in taken]

    def next_due_account(self) -> str | None:
        """The waiting parked sync due soonest (the drain's probe), else a sent one whose
        lease ran out."""
        return self.parked.first_due(time.time())

    def oldest_account(self) -> str | None:
        first = self.parked.oldest_accounts(1)
        return first[0] if first else None

    def claim_account(self, account_id: str, *, lease_s: float) -> ParkedSync | None:
        """Send one given parked sync (the probe)."""
        moment = time.time()
        raw = self.parked.send(account_id, moment + lease_s)
        return ParkedSync.from_json(raw, moment + lease_s) if raw else None

    def expired_accounts(self, now: float | None = None) -> list[str]:
        moment = time.time() if now is None else now
        return self.parked.parked_before(moment - self.max_age_s)

    # -- reading -------------------------------------------------------------------------

    def count(self) -> int:
        return self.parked.count()

    def get(self, account_id: str) -> ParkedSync | None:
        found = self._read([account_id])
        return found[0] if found else None

    def oldest(self) -> ParkedSync | None:
        account = self.oldest_account()
        return self.get(account) if account is not None else None

    def items(self, limit: int = 1000) -> list[ParkedSync]:
        """The parked syncs, oldest first (up to ``limit``)."""
        return self._read(self.parked.oldest_accounts(limit))

    def _read(self, ids: list[str]) -> list[ParkedSync]:
        """The items, with when each is next due (waiting) or may be sent again (sent)."""
        return [ParkedSync.from_json(raw, next_at) for raw, next_at in self.parked.read(ids)]

    def _write(self, account_id: str, expected: str, item: ParkedSync) -> bool:
        return self.parked.write(
            account_id, expected, item.to_json(), next_at=item.next_at, since=item.since
        )


def merge_snapshots(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One snapshot for an account parked twice: the newer (by SystemModstamp) is the record,
    and every won opportunity either carried rides along (newest copy of each), so a deal
    only the older snapshot knew still gets its contract (pure)."""
    old_stamp, new_stamp = snapshot_stamp(old), snapshot_stamp(new)
    older_wins = old_stamp is not None and new_stamp is not None and old_stamp > new_stamp
    newer, older = (old, new) if older_wins else (new, old)
    deals: dict[str, dict[str, Any]] = {}
    for row in (*_deals(older), *_deals(newer)):
        identity = str(row.get("Id"))
        kept = deals.get(identity)
        if kept is None or str(row.get("SystemModstamp") or "") >= str(
            kept.get("SystemModstamp") or ""
        ):
            deals[identity] = row
    deals.pop(str(newer.get("Id")), None)
    merged = {k: v for k, v in newer.items() if k != WON_OPPORTUNITIES_KEY}
    if deals:
        merged[WON_OPPORTUNITIES_KEY] = list(deals.values())
    return merged


def _deals(record: dict[str, Any]) -> Sequence[dict[str, Any]]:
    """The record's own opportunity and the others it carries, without their Account."""
    own = {k: v for k, v in record.items() if k not in ("Account", WON_OPPORTUNITIES_KEY)}
    extra = record.get(WON_OPPORTUNITIES_KEY)
    rows = [own, *(r for r in (extra if isinstance(extra, list) else []) if isinstance(r, dict))]
    return [r for r in rows if r.get("Id")]


def deal_ids(record: dict[str, Any]) -> set[str]:
    """The ids of the opportunities a (parked) account snapshot carries."""
    return {str(r["Id"]) for r in _deals(record)}


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
