"""Publishing syncs: one account per message, or a batch of accounts per message.

A poll or a re-sync publishes *batches* (``crmsync.sync_batch``): a Celery message costs a
worker more CPU (receive, three task events, ack, billiard hand-off) than the Redis part of a
sync, so one message per account capped the backfill at a fifth of what Metronome serves
(README "Performance"). Single-account messages (``crmsync.sync_account``) remain for what
must stand alone: a retry with its countdown, a poisoned batch split apart, a dead-letter
redrive, an operator's ``celery call``.

Every message is sent by its task name (worker/queue/names.py), so publishing needs the app,
never the task modules.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from worker.app import app, declare_queue
from worker.queue.names import DRAIN, POLL, SYNC_ACCOUNT, SYNC_BATCH

log = logging.getLogger(__name__)

#: One account to sync: (account id, record snapshot, known_absent). ``known_absent`` says the
#: poll's batched find saw no Metronome customer for the account's owner.
SyncItem = tuple[str, dict[str, Any], bool]
#: Publish the syncs of one poll chunk (tests pass their own to watch or interrupt a poll).
EnqueueChunk = Callable[[Sequence[SyncItem]], None]

#: Accounts per batch message at most: big enough that the per-message cost vanishes, small
#: enough that a chunk of 500 still spreads over several workers and a batch ends in seconds.
BATCH_SIZE = 50
#: A small poll is split into at least this many messages (when it has that many accounts),
#: so three closes sync on three workers at once instead of one after another.
MIN_BATCHES = 8


def send_sync(
    account_id: str,
    record: dict[str, Any],
    *,
    countdown: float | None = None,
    retries: int = 0,
    **kwargs: Any,
) -> None:
    """Publish one ``crmsync.sync_account``.

    ``argsrepr`` names the account and the opportunity instead of the whole snapshot: it is
    what Flower and the logs show, and formatting (then scrubbing) a full record for every
    message cost the poll a third of its CPU per enqueue.
    """
    app.send_task(
        SYNC_ACCOUNT,
        args=[account_id, record],
        kwargs=kwargs,
        countdown=countdown,
        retries=retries,
        argsrepr=f"[{account_id!r}, <Opportunity {str(record.get('Id'))[:18]!r}>]",
        kwargsrepr=repr(kwargs),
    )


def send_batch(items: Sequence[SyncItem], *, force: bool = False, reason: str = "poll") -> str:
    """Publish one ``crmsync.sync_batch``; returns its task id."""
    task_id = str(uuid.uuid4())
    accounts = [item[0] for item in items]
    shown = ", ".join(repr(a) for a in accounts[:3]) + (", ..." if len(accounts) > 3 else "")
    app.send_task(
        SYNC_BATCH,
        args=[[list(item) for item in items]],
        kwargs={"force": force, "reason": reason},
        task_id=task_id,
        argsrepr=f"[<{len(accounts)} accounts: {shown}>]",
        kwargsrepr=repr({"force": force, "reason": reason}),
    )
    return task_id


def split_batches(items: Sequence[SyncItem], *, size: int = BATCH_SIZE) -> list[list[SyncItem]]:
    """Batches of at most ``size``, and at least MIN_BATCHES of them when there are enough
    items: throughput for a backfill, parallelism for a handful of closes."""
    if not items:
        return []
    count = max(math.ceil(len(items) / size), min(len(items), MIN_BATCHES))
    per_batch, extra = divmod(len(items), count)
    batches: list[list[SyncItem]] = []
    start = 0
    for index in range(count):  # sizes differ by one at most
        end = start + per_batch + (1 if index < extra else 0)
        batches.append(list(items[start:end]))
        start = end
    return batches


def batch_publisher(*, force: bool = False, reason: str = "poll") -> EnqueueChunk:
    """The default way a poll or a re-sync publishes one chunk's syncs."""

    def publish(items: Sequence[SyncItem]) -> None:
        for batch in split_batches(items):
            send_batch(batch, force=force, reason=reason)

    return publish


def request_poll() -> None:
    """Ask a worker for one poll now (the beat's own message: the poll lock makes an extra
    one harmless)."""
    declare_queue()
    app.send_task(POLL)


def request_drain(*, everything: bool = False) -> None:
    """Ask a worker to drain the parked syncs now (a probe just closed the breaker): the
    periodic drain would do it within a poll interval anyway, so a failure here is only
    logged."""
    try:
        declare_queue()
        app.send_task(DRAIN, kwargs={"everything": everything})
    except Exception as exc:  # the broker away: the beat's drain catches up
        log.warning("could not request a drain of the parked syncs: %s", type(exc).__name__)
