"""The beat scheduler: celery-redbeat, healed after Redis loses its data.

Two replicas are safe: celery-redbeat keeps the schedule in Redis behind a lock, so the second
beat waits and takes over when the first stops (at once on a clean stop, after
CRMSYNC_BEAT_LOCK_TIMEOUT_S if it died).

redbeat alone does not survive Redis losing its data (FLUSHALL, a restart without
persistence): it writes the schedule only at start-up, so the running beat would find no
entry and send nothing, forever; and its lock renewal fails on the vanished lock key, which
ends the beat process. :class:`CrmsyncScheduler` re-creates missing entries and re-takes a
lost lock when no one else holds it. It also re-declares the task queue before each send,
because kombu's Redis transport silently drops a message whose queue binding was flushed.
"""

from __future__ import annotations

import logging
from typing import Any

from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis

log = logging.getLogger(__name__)


class CrmsyncScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat that heals its schedule and lock after Redis lost its data."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if self.lock_key and not self._hold_lock():
            # Someone else schedules now; we are the standby. Look again soon.
            return float(self.max_interval)
        self._restore_missing_entries()
        result: float = super().tick(*args, **kwargs)
        return result

    def _hold_lock(self) -> bool:
        """True if this beat holds the lock (re-acquired if it vanished from Redis)."""
        if self.lock is None:
            return False
        if self.lock.owned():
            return True
        if self.lock.acquire(blocking=False):
            log.warning("beat: scheduler lock was lost (Redis flushed?); re-acquired it")
            return True
        return False

    def _restore_missing_entries(self) -> None:
        conf = self.app.redbeat_conf
        client = get_redis(self.app)
        static = list(conf.schedule)
        if not static:
            return
        keys = [self.Entry.generate_key(self.app, name) for name in static]
        with client.pipeline() as pipe:
            for key in keys:
                pipe.zscore(conf.schedule_key, key)
            scores = pipe.execute()
        if any(score is None for score in scores):
            log.warning("beat: schedule entries missing from Redis (flushed?); re-creating them")
            self.setup_schedule()

    def apply_async(self, entry: Any, producer: Any = None, **kwargs: Any) -> Any:
        from worker.app import declare_queue

        try:
            declare_queue()
        except Exception as exc:  # the send itself reports a broker outage
            log.warning("beat: could not declare the queue: %s", type(exc).__name__)
        return super().apply_async(entry, producer=producer, **kwargs)
