"""The poll's Redis state: its fenced lock, the cursors, the event-stream timer, the last
poll's summary and the set of won opportunities (to notice a re-opened deal).

The cursor only moves forward, and only for the poll that still holds the newest fencing
token (a Lua compare-and-set): a poll that lost its lease cannot move it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.state.keys import POLL_LOCK_TTL_S, Keys
from worker.state.locks import LeaseKeeper, TokenLocks, new_token

# KEYS: cursors hash, fence key. ARGV: fence token, then field/value pairs.
# Writes a field only if the fence is still ours and the new value is later than the old one
# (ISO-8601 UTC strings of one fixed format compare in time order).
ADVANCE_CURSORS = """
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

#: The poll lock's lease, renewed the same way (up to POLL_LOCK_TTL_S).
POLL_LOCK_LEASE_S = 30.0


@dataclass(frozen=True, slots=True)
class PollLease:
    token: str
    fence: str


class PollState:
    """The poll's half of the sync store (worker/state/store.py builds the attributes)."""

    client: redis.Redis
    keys: Keys
    locks: TokenLocks
    _leases: LeaseKeeper
    _advance: Any

    def _start_renewing(self, key: str, token: str, lease_ms: int, ttl_s: float) -> None:
        self._leases.hold(key, token, lease_ms, ttl_s)

    def _stop_renewing(self, token: str) -> None:
        self._leases.drop(token)

    # --- poll lock and cursors ----------------------------------------------------------
    def acquire_poll_lock(
        self, ttl_s: int = POLL_LOCK_TTL_S, lease_s: float = POLL_LOCK_LEASE_S
    ) -> PollLease | None:
        """The poll lock, as a lease renewed while the poll runs (at most ``ttl_s`` in all).

        A poll whose worker is SIGKILLed stops renewing, so the next poll can start within
        ``lease_s``; a fixed 600 s TTL kept every poll out for ten minutes (chaos run, seed 3:
        a worker killed mid-poll, every beat poll after it "skipped").
        """
        token = new_token()
        lease_ms = max(1, int(min(float(ttl_s), lease_s) * 1000))
        if not self.locks.take(self.keys.poll_lock, token, lease_ms=lease_ms):
            return None
        fence = str(self.client.incr(self.keys.poll_fence))
        self._start_renewing(self.keys.poll_lock, token, lease_ms, ttl_s)
        return PollLease(token=token, fence=fence)

    def release_poll_lock(self, lease: PollLease) -> None:
        self._stop_renewing(lease.token)
        self.locks.release(self.keys.poll_lock, lease.token)

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
