"""Which workers' main loops are turning: the proof of consumption ``crmsync status`` shows.

A worker can be alive and consume nothing (after a Redis failover one was seen blocked in a
pub/sub read for good): its process answers to the orchestrator, its cursor lag grows slowly,
and nothing else says so. Each worker's main loop records a tick here every
:data:`TICK_S`; a tick older than :data:`STALLED_AFTER_S` means that loop is not turning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from worker.state.keys import Keys

#: How often a worker's main loop records that it runs.
TICK_S = 10.0
#: Several missed ticks: past this the loop is stuck (or the process died without stopping).
STALLED_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class Consumer:
    node: str
    seconds_since_tick: float

    @property
    def stalled(self) -> bool:
        return self.seconds_since_tick > STALLED_AFTER_S

    def as_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "seconds_since_tick": round(self.seconds_since_tick, 1),
            "stalled": self.stalled,
        }


def tick(client: redis.Redis, keys: Keys, node: str) -> None:
    client.hset(keys.consumers, node, f"{time.time():.3f}")


def leave(client: redis.Redis, keys: Keys, node: str) -> None:
    client.hdel(keys.consumers, node)


def consumers(client: redis.Redis, keys: Keys) -> list[Consumer]:
    now = time.time()
    raw: dict[bytes | str, bytes | str] = client.hgetall(keys.consumers)
    found = []
    for node, at in raw.items():
        name = node.decode() if isinstance(node, bytes) else node
        stamp = float(at.decode() if isinstance(at, bytes) else at)
        found.append(Consumer(name, max(0.0, now - stamp)))
    return sorted(found, key=lambda c: c.node)
