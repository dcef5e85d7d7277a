"""``crmsync beat``: the scheduler that sends ``crmsync.poll_closed_won`` every interval.

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

import argparse
import logging
from typing import Any

from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis

from worker.runtime import runtime

log = logging.getLogger(__name__)

SCHEDULER = "worker.commands.beat:CrmsyncScheduler"


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
        self._declare_queue()
        return super().apply_async(entry, producer=producer, **kwargs)

    def _declare_queue(self) -> None:
        from worker.app import QUEUE

        try:
            with self.app.connection_for_write() as connection:
                self.app.amqp.queues[QUEUE].bind(connection.default_channel).declare()
        except Exception as exc:  # the send itself reports a broker outage
            log.warning("beat: could not declare queue %s: %s", QUEUE, type(exc).__name__)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "beat", help="run the scheduler (safe to run two: one waits on a Redis lock)"
    )
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from celery.apps.beat import Beat

    # Beat only sends messages: it needs Redis, not the Salesforce or Metronome credentials.
    with runtime(needs_credentials=False) as rt:
        Beat(app=rt.app, loglevel=args.loglevel, scheduler=SCHEDULER).run()
    return 0
