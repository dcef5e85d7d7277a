"""What the chaos runner reads from Redis: pending work and redeliveries, riding out restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis

from worker.state.keys import QUEUE

_T = TypeVar("_T")
#: kombu's Redis transport keeps reserved-but-unacked messages in this hash.
UNACKED_KEY = "unacked"


def retrying(action: Callable[[], _T], attempts: int = 60) -> _T:
    """Our own reads of Redis ride out its restart (the runner is not under test)."""
    for attempt in range(attempts):
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def pending(client: redis.Redis) -> int:
    """Messages queued or reserved (a retry waiting on its countdown is reserved, too)."""
    count = int(client.hlen(UNACKED_KEY))
    for key in client.scan_iter(match=f"{QUEUE}*", _type="list"):
        count += int(client.llen(key))
    return count


def redelivered_keys(client: redis.Redis, prefix: str) -> set[str]:
    """Delivery counters above 1: messages the broker handed out more than once."""
    keys = list(client.scan_iter(match=f"{prefix}:delivery:*", count=1000))
    values = client.mget(keys) if keys else []
    return {key for key, value in zip(keys, values, strict=True) if value and int(value) > 1}
