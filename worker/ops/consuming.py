"""A consumer bootstep that records, from the worker's main loop, that the loop turns.

The tick runs on the loop's own timer (the thread that reads the broker), so it stops exactly
when consumption stops: a loop blocked in a read records nothing, and ``crmsync status`` shows
the worker as stalled (worker/state/consumers.py). Failures to record are logged and skipped:
the tick must never be what stops a worker.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import bootsteps

from worker.state import consumers
from worker.state.connections import redis_client
from worker.state.keys import Keys

log = logging.getLogger(__name__)


class ConsumerTick(bootsteps.StartStopStep):  # type: ignore[misc]
    requires = {"celery.worker.consumer.tasks:Tasks"}
    #: Set by :func:`install` before the worker starts.
    redis_url: str | None = None
    keys: Keys = Keys()

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self._client: redis.Redis | None = None

    def start(self, parent: Any) -> None:
        if self.redis_url is None:
            return
        if self._client is None:
            # Short timeouts: the tick runs on the loop that consumes, which it must not hold
            # up for long while Redis is away.
            self._client = redis_client(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        node = parent.hostname
        self._record(node)
        self._timer = parent.timer.call_repeatedly(consumers.TICK_S, self._record, (node,))

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if self._client is not None:
            try:
                consumers.leave(self._client, self.keys, parent.hostname)
            except Exception as exc:  # Redis away at shutdown: status shows it stalled
                log.warning("could not remove this worker from the consumers: %r", exc)

    def _record(self, node: str) -> None:
        if self._client is None:
            return
        try:
            consumers.tick(self._client, self.keys, node)
        except Exception as exc:
            log.warning("could not record this worker's tick: %r", exc)


def install(app: Any, redis_url: str, keys: Keys) -> None:
    """Add the tick to ``app``'s consumer (once; ``crmsync worker`` calls it at start)."""
    ConsumerTick.redis_url = redis_url
    ConsumerTick.keys = keys
    app.steps["consumer"].add(ConsumerTick)
