"""A process that asks a shared circuit breaker for admission (tests/outages/test_breaker.py).

Its own module so a ``spawn`` child imports only Redis and the breaker: as the test module's
function it imported everything that module does, about 1.7 s of CPU per child.
"""

from __future__ import annotations

from typing import Any

import redis

from worker.outages.breaker import CircuitBreaker, Policy
from worker.state.keys import Keys


def ask(url: str, keys: Keys, policy: Policy, start: Any, out: Any) -> None:
    """Wait for ``start``, then ask 20 times at once with the others; put the decisions."""
    breaker = CircuitBreaker(redis.Redis.from_url(url), keys, "metronome", policy)
    start.wait(60)
    out.put([breaker.admit().decision for _ in range(20)])
