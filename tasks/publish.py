"""Publishing syncs: one account per message, or a batch of accounts per message.

A poll or a re-sync publishes *batches* (``crmsync.sync_batch``): a Celery message costs a
worker more CPU (receive, three task events, ack, billiard hand-off) than the Redis part of a
sync, so one message per account capped the backfill at a fifth of what Metronome serves
(README "Performance"). Single-account messages (``crmsync.sync_account``) remain for what
must stand alone: a retry with its countdown, a poisoned batch split apart, a dead-letter
redrive, an operator's ``celery call``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

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
    from tasks.sync import sync_account

    sync_account.apply_async(
        args=[account_id, record],
        kwargs=kwargs,
        countdown=countdown,
        retries=retries,
        argsrepr=f"[{account_id!r}, <Opportunity {str(record.get('Id'))[:18]!r}>]",
        kwargsrepr=repr(kwargs),
    )


def send_batch(items: Sequence[SyncItem], *, force: bool = False, reason: str = "poll") -> str:
    """Publish one ``crmsync.sync_batch``; returns its task id."""
    from tasks.batch import sync_batch

    task_id = str(uuid.uuid4())
    accounts = [item[0] for item in items]
    shown = ", ".join(repr(a) for a in accounts[:3]) + (", ..." if len(accounts) > 3 else "")
    sync_batch.apply_async(
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
