"""Give back, right after a reconnect, the messages of the tasks a lost connection cancelled.

With acks_late, Celery cancels the tasks running when the broker connection is lost
(``worker_cancel_long_running_tasks_on_connection_loss``): their acks could not reach the
broker anyway. In AMQP the broker requeues them when the channel dies; kombu's Redis
transport instead pushes them back when it closes the channel, which needs the connection
that was just lost. When Redis is away at that moment (a primary killed, a failover still
electing), the messages stay in kombu's ``unacked`` hash until the visibility timeout (900 s
by default): a backfill cut by a failover would finish a quarter of an hour late.

This consumer remembers the delivery tags of the tasks it cancels, and once the new
connection is up, restores exactly those from ``unacked`` to the queue (what kombu would have
done at channel close). A tag the failover lost is simply absent: nothing to restore, and the
poll's failover rule covers its deal (docs/reliability.md). A task restored while its first
run was still being stopped runs under the account lock like any redelivery.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.state import active_requests

log = logging.getLogger(__name__)

#: Celery's ``worker_consumer`` setting names this class (worker/commands/worker.py).
CONSUMER = "worker.ops.redelivery:Consumer"


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, remembering which messages a connection loss cancelled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.cancelled_tags: set[str] = set()
        super().__init__(*args, **kwargs)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        if self.app.conf.worker_cancel_long_running_tasks_on_connection_loss:
            for request in tuple(active_requests):
                if request.task.acks_late and not request.acknowledged:
                    tag = request.message.delivery_tag
                    if tag:
                        self.cancelled_tags.add(str(tag))
        super().on_connection_error_after_connected(exc)


class RestoreCancelled(bootsteps.StartStopStep):  # type: ignore[misc]
    """After each (re)connect: push the cancelled tasks' messages back onto their queue."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, parent: Any) -> None:
        tags = getattr(parent, "cancelled_tags", None)
        if not tags:
            return
        restored = 0
        try:
            channel = parent.connection.default_channel
            for tag in sorted(tags):
                channel.qos.restore_by_tag(tag)
                tags.discard(tag)
                restored += 1
        except Exception as exc:  # still away: the next reconnect tries again
            log.warning("could not restore %d cancelled messages yet: %r", len(tags), exc)
        if restored:
            log.warning("restored %d messages whose tasks the lost connection cancelled", restored)


def install(app: Any) -> None:
    app.conf.worker_consumer = CONSUMER
    app.steps["consumer"].add(RestoreCancelled)
