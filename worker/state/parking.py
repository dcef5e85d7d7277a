"""The parked syncs in Redis: four keys (worker/state/keys.py) written only by Lua scripts.

A hash of the parked syncs as JSON, a sorted set of those waiting by next attempt, one of
those sent (their replay on its way) by when they may be sent again, and one by first park.
This module moves items between them atomically; what an item holds and when it is due is
the parking's policy (worker/outages/parking.py), which only ever hands this module JSON text
and times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import redis

    from worker.state.keys import Keys

# KEYS: items hash, due zset, sent zset, since zset. ARGV: account, expected old JSON ("" =
# absent), new JSON ("" = delete), next attempt, since. Writes only if the item is still what
# was read. A (re)parked sync waits again: out of the sent set, into the due one.
_CAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return 1
"""

# KEYS: items hash, the set to take from (due, or sent), the sent set. ARGV: highest score to
# take (or "+inf"), how many at most, the lease end to give them in the sent set. Returns
# account, JSON, account, JSON, ...
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local reply = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  local item = redis.call('HGET', KEYS[1], id)
  if item then
    redis.call('ZADD', KEYS[3], ARGV[3], id)
    reply[#reply + 1] = id
    reply[#reply + 1] = item
  end
end
return reply
"""

# KEYS: items hash, due zset, sent zset. ARGV: now, then accounts. Makes the parked ones of
# them due now (waiting or sent); returns those.
_DUE_NOW = """
local made = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    made[#made + 1] = id
  end
end
return made
"""


class ParkedStore:
    """Reads and atomic moves of the parked syncs' keys (thread-safe: writes are scripts)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._cas = client.register_script(_CAS)
        self._claim = client.register_script(_CLAIM)
        self._due_now = client.register_script(_DUE_NOW)

    def raw(self, account_id: str) -> str | None:
        """The account's parked item as stored (JSON), or None."""
        return cast(str | None, self.client.hget(self.keys.parked_items, account_id))

    def write(
        self, account_id: str, expected: str, new: str, *, next_at: float | None, since: float
    ) -> bool:
        """Store ``new`` (waiting, due at ``next_at``) if the item is still ``expected``
        ("" = absent); False when another writer changed it first."""
        args = [account_id, expected, new, repr(next_at), repr(since)]
        return bool(int(self._cas(keys=self._all(), args=args)))

    def delete(self, account_id: str, expected: str) -> bool:
        """Remove the item from all four keys if it is still ``expected``."""
        return bool(int(self._cas(keys=self._all(), args=[account_id, expected, "", "0", "0"])))

    def accounts(self) -> list[str]:
        return [_text(i) for i in cast(list[Any], self.client.hkeys(self.keys.parked_items))]

    def make_due(self, account_ids: Sequence[str], now: float) -> list[str]:
        """Due ``now``: those of the accounts that are parked (waiting or sent)."""
        reply = self._due_now(
            keys=[self.keys.parked_items, self.keys.parked_due, self.keys.parked_sent],
            args=[repr(now), *account_ids],
        )
        return [_text(i) for i in cast(list[Any], reply)]

    def take(
        self, *, sent: bool, bound: str, limit: int, lease_end: float
    ) -> list[tuple[str, str]]:
        """Move up to ``limit`` items scored up to ``bound`` from the waiting (or, ``sent``,
        the sent) set into the sent set until ``lease_end``; (account, JSON) pairs."""
        source = self.keys.parked_sent if sent else self.keys.parked_due
        reply = self._claim(
            keys=[self.keys.parked_items, source, self.keys.parked_sent],
            args=[bound, str(limit), repr(lease_end)],
        )
        items = cast(list[Any], reply)
        return [(_text(items[i]), _text(items[i + 1])) for i in range(0, len(items), 2)]

    def first_due(self, now: float) -> str | None:
        """The waiting item due soonest, else a sent one whose lease ended by ``now``."""
        first = cast(list[Any], self.client.zrange(self.keys.parked_due, 0, 0))
        if not first:
            first = cast(
                list[Any],
                self.client.zrangebyscore(self.keys.parked_sent, "-inf", repr(now), start=0, num=1),
            )
        return _text(first[0]) if first else None

    def oldest_accounts(self, limit: int) -> list[str]:
        """Accounts by first park, oldest first."""
        rows = cast(list[Any], self.client.zrange(self.keys.parked_since, 0, limit - 1))
        return [_text(i) for i in rows]

    def send(self, account_id: str, lease_end: float) -> str | None:
        """Move one item to the sent set until ``lease_end``; its JSON, or None if absent."""
        raw = self.raw(account_id)
        if not raw:
            return None
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.parked_due, account_id)
        pipe.zadd(self.keys.parked_sent, {account_id: lease_end})
        pipe.execute()
        return raw

    def parked_before(self, moment: float) -> list[str]:
        """Accounts first parked at or before ``moment``."""
        rows = cast(
            list[Any], self.client.zrangebyscore(self.keys.parked_since, "-inf", repr(moment))
        )
        return [_text(r) for r in rows]

    def count(self) -> int:
        return int(self.client.hlen(self.keys.parked_items))

    def read(self, ids: Sequence[str]) -> list[tuple[str, float | None]]:
        """The items (JSON) with when each is next due (waiting) or may be sent again (sent),
        in one round trip; absent ones are left out."""
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for account in ids:
            pipe.hget(self.keys.parked_items, account)
            pipe.zscore(self.keys.parked_due, account)
            pipe.zscore(self.keys.parked_sent, account)
        replies = pipe.execute()
        found: list[tuple[str, float | None]] = []
        for index in range(len(ids)):
            raw, due, sent = replies[3 * index : 3 * index + 3]
            if raw:
                found.append((_text(raw), due if due is not None else sent))
        return found

    def _all(self) -> list[str]:
        return [
            self.keys.parked_items,
            self.keys.parked_due,
            self.keys.parked_sent,
            self.keys.parked_since,
        ]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
