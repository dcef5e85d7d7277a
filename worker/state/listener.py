"""The listener's Redis state: the lease, the replay ids, and what operators read.

* **Lease with fencing.** One listener per org is active. It holds a lease key (a random
  token, renewed every third of its TTL) and bumps a fencing number when it takes it. Every
  replay id write is a Lua compare-and-set on that token, so a listener that lost its lease
  (paused past the TTL, cut off from Redis) can no longer move the replay id under the new
  holder's feet. What it may still do is enqueue a sync the new holder enqueues again: the
  dedupe hash makes that second sync free.
* **Replay ids are bytes** (opaque to us: Salesforce defines them), so this module keeps its
  own Redis client without ``decode_responses``.
* **Topic stats** (last event, last keepalive, lag, reconnects) are plain hash fields, written
  as they happen, so ``crmsync status`` and the metrics read them without asking the listener.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.state.keys import Keys
from worker.state.locks import TokenLocks

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[3], 'holder', ARGV[3], 'fence', fence, 'since', ARGV[4])
  return fence
end
return 0
"""
# KEYS: lease, replay hash. ARGV: token, then topic/replay-id pairs.
_STORE_REPLAY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class ListenerLease:
    token: str
    fence: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ListenerState:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._acquire = client.register_script(_ACQUIRE)
        self.locks = TokenLocks(client)
        self._store = client.register_script(_STORE_REPLAY)

    @classmethod
    def from_url(cls, url: str, prefix: str = "crmsync") -> ListenerState:
        client = redis.Redis.from_url(
            url,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=25,
            retry_on_timeout=True,
        )
        return cls(client, Keys(prefix))

    def close(self) -> None:
        self.client.close()

    # --- the lease ---------------------------------------------------------------------
    def try_acquire(self, lease_s: float) -> ListenerLease | None:
        token = secrets.token_hex(16)
        holder = f"{socket.gethostname()}:{os.getpid()}"
        fence = int(
            self._acquire(
                keys=[self.keys.listener_lease, self.keys.listener_fence, self.keys.listener_info],
                args=[token, int(lease_s * 1000), holder, _now()],
            )
        )
        return ListenerLease(token, fence) if fence else None

    def renew(self, lease: ListenerLease, lease_s: float) -> bool:
        """False when the lease is no longer ours (expired and taken, or Redis lost it)."""
        return self.locks.extend(self.keys.listener_lease, lease.token, int(lease_s * 1000))

    def release(self, lease: ListenerLease) -> None:
        self.locks.release(self.keys.listener_lease, lease.token)

    def holder(self) -> dict[str, str]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(self.keys.listener_info))
        info = {_text(k): _text(v) for k, v in raw.items()}
        info["active"] = "yes" if self.client.exists(self.keys.listener_lease) else "no"
        return info

    # --- replay ids --------------------------------------------------------------------
    def replay_id(self, topic: str) -> bytes | None:
        value = self.client.hget(self.keys.listener_replay, topic)
        return cast(bytes, value) if value else None

    def store_replay_ids(self, lease: ListenerLease, replay_ids: Mapping[str, bytes]) -> bool:
        """Write the topics' replay ids if ``lease`` is still held; False when fenced out."""
        if not replay_ids:
            return True
        args: list[str | bytes] = [lease.token]
        for topic, replay_id in replay_ids.items():
            args += [topic, replay_id]
        return bool(
            self._store(keys=[self.keys.listener_lease, self.keys.listener_replay], args=args)
        )

    def forget_replay_id(self, lease: ListenerLease, topic: str) -> None:
        """Drop a topic's replay id the server refused (expired or corrupted)."""
        if self.client.get(self.keys.listener_lease) == lease.token.encode():
            self.client.hdel(self.keys.listener_replay, topic)

    # --- what operators read -----------------------------------------------------------
    def record(self, topic: str, **fields: str | int | float) -> None:
        if fields:
            self.client.hset(self.keys.listener_topic(topic), mapping=cast(Any, fields))

    def count(self, topic: str, field: str, amount: int = 1) -> None:
        if amount:
            self.client.hincrby(self.keys.listener_topic(topic), field, amount)

    def topic_stats(self, topic: str) -> dict[str, str]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(self.keys.listener_topic(topic)))
        return {_text(k): _text(v) for k, v in raw.items()}

    def topics(self) -> list[str]:
        """Every topic with stats or a replay id (for status, without knowing the settings)."""
        prefix = self.keys.listener_topic("")
        names = {
            _text(key)[len(prefix) :]
            for key in self.client.scan_iter(match=f"{prefix}*", count=100)
        }
        names.update(
            _text(k) for k in cast(list[bytes], self.client.hkeys(self.keys.listener_replay))
        )
        return sorted(names)

    def last_contact(self, topic: str) -> float | None:
        """Wall-clock time of the topic's last event or keepalive (None: never)."""
        values = cast(
            list[bytes | None],
            self.client.hmget(
                self.keys.listener_topic(topic), ["last_event_at", "last_keepalive_at"]
            ),
        )
        seen = [float(v) for v in values if v]
        return max(seen) if seen else None

    # --- what the triage asks of the sync state -----------------------------------------
    def known_won(self, opportunity_ids: Iterable[str]) -> set[str]:
        """The ids (of ``opportunity_ids``) the poll or the listener has seen won."""
        ids = list(dict.fromkeys(opportunity_ids))
        if not ids:
            return set()
        flags = cast(list[int], self.client.smismember(self.keys.won_opportunities, ids))
        return {i for i, flag in zip(ids, flags, strict=True) if flag}

    def known_accounts(self, account_ids: Iterable[str]) -> set[str]:
        """Accounts with a synced state or a customer in Redis (they had a won deal)."""
        ids = list(dict.fromkeys(account_ids))
        if not ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for account_id in ids:
            pipe.hmget(self.keys.account(account_id), ["state_hash", "customer_id"])
        rows = cast(list[list[bytes | None]], pipe.execute())
        return {i for i, row in zip(ids, rows, strict=True) if any(row)}


def _now() -> str:
    return f"{time.time():.3f}"


def listener_report(
    state: ListenerState, now: float | None = None, *, with_replay_ids: bool = True
) -> dict[str, Any]:
    """What ``crmsync status`` (and the metrics) show of the listener, from Redis alone.

    ``with_replay_ids=False`` for a client with ``decode_responses`` (the metrics' store):
    replay ids are bytes that need not be text."""
    now = time.time() if now is None else now
    holder = state.holder()
    topics: dict[str, Any] = {}
    for topic in state.topics():
        stats = state.topic_stats(topic)
        replay = state.replay_id(topic) if with_replay_ids else None
        row: dict[str, Any] = {
            "state": stats.get("state", "-"),
            "subscribed_from": stats.get("subscribed_from"),
            "stored_replay_id": replay.hex() if replay else None,
            "events": int(stats.get("events", 0)),
            "skipped": int(stats.get("skipped", 0)),
            "reconnects": int(stats.get("reconnects", 0)),
            "event_lag_s": float(stats["last_lag_s"]) if "last_lag_s" in stats else None,
        }
        for name in ("last_event_at", "last_keepalive_at"):
            if name in stats:
                row[name] = _iso(float(stats[name]))
                row[name.replace("_at", "_age_s")] = round(now - float(stats[name]), 1)
        if stats.get("last_error"):
            row["last_error"] = stats["last_error"]
        topics[topic] = row
    return {
        "active": holder.get("active") == "yes",
        "holder": holder.get("holder"),
        "fence": int(holder["fence"]) if holder.get("fence") else None,
        "topics": topics,
    }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
