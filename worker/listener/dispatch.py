"""From record ids named by change events to queued syncs, through the poll's own path.

The listener never builds a sync from an event body: it reads the won deals of the named
records again from Salesforce (one query for a whole coalesced burst), groups them by account
exactly as the poll does, asks Metronome once which owners have no customer yet (the poll's
batched hint), and publishes ``crmsync.sync_batch`` messages with reason ``event``. Dedupe,
locks, snapshot stamps, the ledger and exactly-once are therefore the poll's, unchanged.

A poll is requested by publishing ``crmsync.poll_closed_won`` (the beat's own message): the
poll lock makes an extra one harmless, and a worker runs it, not this process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.queue.grouping import find_absent, group_by_account
from worker.queue.publish import EnqueueChunk, batch_publisher, request_poll

if TYPE_CHECKING:
    from worker.context import WorkerContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dispatched:
    accounts: int
    salesforce_queries: int


class Dispatcher:
    def __init__(self, ctx: WorkerContext, publish: EnqueueChunk | None = None) -> None:
        self.ctx = ctx
        self._publish = publish

    def sync(self, opportunity_ids: Sequence[str], account_ids: Sequence[str]) -> Dispatched:
        """Enqueue syncs of the won deals among ``opportunity_ids`` and of the accounts'.

        Raises whatever reading Salesforce or publishing raised: the caller keeps the events
        (and their replay ids) and tries again, so nothing is acknowledged that was not queued.
        """
        from worker.app import declare_queue

        if not opportunity_ids and not account_ids:
            return Dispatched(0, 0)
        rows = list(self.ctx.source.records_for_changes(opportunity_ids, account_ids))
        # records_for_changes sends one query per 200 ids of each kind, both kinds together.
        queries = max(-(-len(set(opportunity_ids)) // 200), -(-len(set(account_ids)) // 200))
        if not rows:
            return Dispatched(0, max(1, queries))
        self.ctx.store.mark_won(str(row["Id"]) for row in rows if row.get("Id"))
        grouped = group_by_account(rows)
        absent = find_absent(self.ctx, grouped)
        if self._publish is None:
            declare_queue()
            self._publish = batch_publisher(reason="event")
        self._publish([(a, record, a in absent) for a, record in grouped.items()])
        return Dispatched(len(grouped), max(1, queries))

    def poll_now(self, why: str) -> None:
        """Ask a worker for one poll now (replay lost, gap overflow, delivery allocation used)."""
        request_poll()
        log.info("listener requested a poll: %s", why)
