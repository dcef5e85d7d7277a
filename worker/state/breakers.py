"""A circuit breaker's state in Redis: one hash per API and its set of failing subjects.

Every transition is one run of the breaker's Lua state machine (its source is the breaker's
own, worker/outages/breaker.lua, handed in as text), so it is atomic and on Redis's clock;
this module only knows the keys and how to run it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

    from worker.state.keys import Keys


class BreakerRecord:
    """One API's breaker keys, moved only by ``script`` (the state machine's source)."""

    def __init__(self, client: redis.Redis, keys: Keys, api: str, script: str) -> None:
        self._script = client.register_script(script)
        self._keys = [keys.breaker(api), keys.breaker_failing(api)]

    def run(self, op: str, now: str, *extra: str) -> list[Any]:
        """One transition (or read: ``state``); ``now`` is "" for Redis's own clock."""
        reply: list[Any] = self._script(keys=self._keys, args=[op, now, *extra])
        return reply
