"""``crmsync.resync``: an operator's manual re-sync, by account ids, ``all``, or ``since`` a date.

Records are read fresh from Salesforce (never from Redis), and the dedupe hash is bypassed
(``force``), so a customer edited by hand in Metronome is put right even when nothing changed
in Salesforce. Callable from the CLI, ``celery call crmsync.resync`` and Flower's task API, so
its arguments are plain JSON values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from mappings.ids import normalize_salesforce_id
from worker.app import app, declare_queue
from worker.context import WorkerContext, get_context
from worker.queue.grouping import chunks, find_absent, group_by_account
from worker.queue.publish import EnqueueChunk, batch_publisher
from worker.salesforce.trouble import diagnose

log = logging.getLogger(__name__)


class ResyncRequestError(ValueError):
    """The re-sync request itself is wrong (bad id, bad date, nothing selected)."""


def parse_since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ResyncRequestError(
            f"since={value!r} is not an ISO date or datetime (e.g. 2026-11-01)"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def run_resync(
    ctx: WorkerContext,
    *,
    account_ids: list[str] | None = None,
    all_accounts: bool = False,
    since: str | None = None,
    force: bool = True,
    enqueue: EnqueueChunk | None = None,
) -> dict[str, Any]:
    selectors = sum([bool(account_ids), all_accounts, since is not None])
    if selectors != 1:
        raise ResyncRequestError("choose exactly one of: account ids, all, since")
    requested: list[str] = []
    rows: Iterator[dict[str, Any]]
    if account_ids:
        # Validated before anything talks to Salesforce (not even a login), let alone SOQL.
        try:
            requested = [normalize_salesforce_id(i) for i in account_ids]
        except ValueError as exc:
            raise ResyncRequestError(str(exc)) from exc
    source = ctx.source
    if account_ids:
        rows = source.records_for_accounts(requested)
    elif all_accounts:
        rows = source.all_records()
    else:
        assert since is not None  # noqa: S101 - guaranteed by the selector count
        rows = source.records_since(parse_since(since))

    if enqueue is None:
        declare_queue()
        enqueue = batch_publisher(force=force, reason="resync")
    enqueued: list[str] = []
    for chunk in chunks(rows, 500):
        grouped = group_by_account(chunk)
        absent = find_absent(ctx, grouped, force=force)
        enqueue([(a, record, a in absent) for a, record in grouped.items()])
        enqueued.extend(grouped)
    found = set(enqueued)
    not_found = [i for i in requested if i not in found]
    if not_found:
        log.warning("resync: no won opportunity found for %s", ", ".join(not_found))
    return {"enqueued": len(enqueued), "account_ids": enqueued[:1000], "not_found": not_found}


@app.task(name="crmsync.resync", ignore_result=False, acks_late=False)
def resync(
    account_ids: list[str] | None = None,
    all: bool = False,
    since: str | None = None,
    force: bool = True,
) -> dict[str, Any]:
    """Re-read the selected accounts from Salesforce and sync them (hash bypassed).

    A failure Salesforce causes (a refused login, a missing field...) ends the task with its
    one line as the result, not a traceback; simple-salesforce's exceptions would not even
    pickle into the result backend."""
    try:
        return run_resync(
            get_context(), account_ids=account_ids, all_accounts=all, since=since, force=force
        )
    except Exception as exc:
        trouble = diagnose(exc)
        if trouble is None:
            raise
        log.warning("resync stopped: %s", trouble.line, extra={"salesforce_trouble": trouble.kind})
        return {"status": "failed", "reason": trouble.line, "trouble": trouble.kind, "enqueued": 0}
