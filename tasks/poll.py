"""``crmsync.poll_closed_won``: what changed in Salesforce → one sync message per account.

The cursor moves only after every message of the poll was enqueued, and only for the poll
that still holds the newest fencing token: a crash between enqueue and cursor write re-reads
the same rows next time (the dedupe hash makes that free), it never skips one.

Rows are enqueued in chunks as they stream in, so a 100k-row poll holds one chunk, not the
whole result; an account appearing in two chunks gets two messages, and the second is a
dedupe hit or waits on the account lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from tasks.poll_trouble import stopped_poll, stuck_poll
from worker.app import app, declare_queue
from worker.context import WorkerContext, get_context
from worker.outages.breaker import Admission
from worker.outages.salesforce import outage_reason
from worker.queue.grouping import CHUNK_ROWS, chunks, find_absent, group_by_account
from worker.queue.names import POLL
from worker.queue.publish import EnqueueChunk, batch_publisher
from worker.salesforce import Cursors, PollReader, SourceEvent
from worker.salesforce.errors import SalesforceUnreadable
from worker.salesforce.trouble import SalesforceTroubleError
from worker.state.store import PollLease

__all__ = ["group_by_account", "poll_closed_won", "run_poll"]

log = logging.getLogger(__name__)


def _guarded(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Turn a broken answer into one clear error (the bare KeyError 'records' or a
    JSONDecodeError from requests says nothing to an operator); the cursor stays put."""
    try:
        yield from rows
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise SalesforceUnreadable(
            "Salesforce answered the poll's query with something unreadable or not at all "
            f"({type(exc).__name__}: {str(exc)[:200]}); cursors unchanged, the next poll "
            "reads the same rows again"
        ) from exc


def _cursor_text(value: datetime) -> str:
    """Fixed-width UTC text, so Redis can compare cursors as strings (worker.state.store)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class _Progress:
    """How far a poll got: what a failed poll reports."""

    rows: int = 0
    accounts: int = 0


def run_poll(
    ctx: WorkerContext, enqueue: EnqueueChunk | None = None, *, raise_outage: bool = False
) -> dict[str, Any]:
    """Read what changed, publish its syncs chunk by chunk, then move the cursors.

    ``enqueue`` publishes one chunk's syncs; the default sends ``crmsync.sync_batch``
    messages (worker/queue/publish.py). Tests pass their own to watch or interrupt a poll.
    ``raise_outage`` (``crmsync poll``, run by hand): an outage is still counted and recorded,
    then its error is raised, so the command names what it could not reach and where
    (worker/commands/errors.py) instead of a bare "no answer".

    Salesforce's circuit breaker (worker/outages/salesforce.py) comes first: while Salesforce is
    down or its quota spent, a poll makes no call and moves no cursor ("paused"), but one
    poll is the probe now and then, and its success resumes polling."""
    store = ctx.store
    started = time.monotonic()
    stopped = stopped_poll(ctx, started)  # a configuration Salesforce refuses: do not ask
    if stopped is not None:
        if raise_outage:
            raise SalesforceTroubleError(stopped["reason"], stopped["trouble"])
        return stopped
    pause = ctx.salesforce_pause
    admission = pause.admit()
    if not admission.go:
        return _paused(ctx)
    reported = False
    lease = store.acquire_poll_lock()
    if lease is None:
        pause.release(admission)
        log.info("poll skipped: another poll holds the lock")
        return {"status": "skipped", "reason": "another poll is running"}
    try:
        if enqueue is None:
            declare_queue()
            enqueue = batch_publisher(reason="poll")
        start, run_id = store.cursors_for_poll()  # the failover rule (worker/state/polls.py)
        stored: dict[str, str | None] = dict(start)
        cursors = Cursors.from_json(stored or None)
        with_events = store.events_due(ctx.settings.events_interval_s)
        progress = _Progress()
        try:
            reader = ctx.source.poll(cursors, with_events=with_events)  # logs in on first use
            _enqueue_changes(ctx, reader, enqueue, progress)
        except Exception as exc:
            reason = _outage(exc)
            if reason is None:
                # A wrong login, a missing field, no permission: one line, no traceback.
                reported = True
                return stuck_poll(ctx, exc, admission, raise_it=raise_outage, started=started)
            log.warning("poll failed: %s", reason)
            pause.outage(reason, admission)
            reported = True
            failed = _record_failure(ctx, reason, progress, started)
            if raise_outage and not isinstance(exc, SalesforceUnreadable):
                raise
            return failed
        summary = _summary(ctx, reader, progress, started)
        _conclude(ctx, reader, summary, lease, admission, origin=(run_id, start))
        reported = True
        summary["cursors"] = store.cursors()
        store.record_poll(summary)
        log.info("poll: %s", summary)
        return summary
    finally:
        if not reported:
            pause.release(admission)  # a probe that learnt nothing gives its turn back
        store.release_poll_lock(lease)


def _enqueue_changes(
    ctx: WorkerContext, reader: PollReader, enqueue: EnqueueChunk, progress: _Progress
) -> None:
    """Stream the changed rows chunk by chunk: one snapshot per account, its syncs queued."""
    for chunk in chunks(_guarded(reader), CHUNK_ROWS):
        progress.rows += len(chunk)
        ctx.store.mark_won(str(row["Id"]) for row in chunk if row.get("Id"))
        grouped = group_by_account(chunk)
        absent = find_absent(ctx, grouped)
        enqueue([(a, record, a in absent) for a, record in grouped.items()])
        progress.accounts += len(grouped)


def _record_failure(
    ctx: WorkerContext, reason: str, progress: _Progress, started: float
) -> dict[str, Any]:
    """A poll Salesforce failed: recorded as the last poll, cursors unchanged."""
    failed: dict[str, Any] = {
        "status": "failed",
        "reason": reason,
        "rows": progress.rows,
        "enqueued": progress.accounts,
        "finished_at": _cursor_text(datetime.now(UTC)),
        "duration_s": round(time.monotonic() - started, 3),
        "cursors": ctx.store.cursors(),
    }
    ctx.store.record_poll(failed)
    return failed


def _summary(
    ctx: WorkerContext, reader: PollReader, progress: _Progress, started: float
) -> dict[str, Any]:
    """What a finished poll did (its events recorded as "needs attention" first)."""
    attention = _record_events(ctx, reader.events)
    usage = ctx.source.sf.api_usage.get("api-usage")
    return {
        "status": "stopped_for_quota" if reader.stopped_for_quota else "ok",
        "rows": progress.rows,
        "enqueued": progress.accounts,
        "needs_attention": attention,
        "salesforce_calls": reader.salesforce_calls,
        "salesforce_api_usage": [usage.used, usage.total] if usage else None,
        "finished_at": _cursor_text(datetime.now(UTC)),
        "duration_s": round(time.monotonic() - started, 3),
    }


def _conclude(
    ctx: WorkerContext,
    reader: PollReader,
    summary: dict[str, Any],
    lease: PollLease,
    admission: Admission,
    *,
    origin: tuple[str, dict[str, str]],
) -> None:
    """The breaker learns how the poll went; the cursors move, fenced by the poll lease, with
    ``origin`` (the primary's run id and the cursors the poll started from) beside them."""
    pause = ctx.salesforce_pause
    if reader.stopped_for_quota:
        # The quota pauses polls at once (every poll would only spend more of it).
        pause.quota(reader.quota_reason or "quota reached")
        return
    pause.succeeded(admission)
    new = {
        name: _cursor_text(value)
        for name, value in vars_of(reader.new_cursors).items()
        if value is not None
    }
    run_id, started_from = origin
    if not ctx.store.advance_cursors(lease, new, run_id=run_id, started_from=started_from):
        summary["status"] = "fenced_out"
        log.warning("poll finished after a newer poll took over; cursor left to it")


def _paused(ctx: WorkerContext) -> dict[str, Any]:
    """A poll while Salesforce's breaker is open: no call, no cursor moved, not recorded as
    the last poll (that one says why polling paused)."""
    state = ctx.salesforce_pause.state()
    shown = state.as_dict()
    log.info(
        "poll paused: Salesforce breaker %s since %s (%s); next probe in %s s",
        state.state,
        shown["since"],
        state.reason,
        shown["probe_in_s"],
    )
    return {
        "status": "paused",
        "reason": state.reason or "Salesforce is unavailable",
        "since": shown["since"],
        "probe_in_s": shown["probe_in_s"],
        "rows": 0,
        "enqueued": 0,
        "cursors": ctx.store.cursors(),
    }


def _outage(exc: Exception) -> str | None:
    """What a failed poll says about Salesforce: why it is unavailable (the poll counts
    toward the breaker, its cursors stay), or None (the error is raised as it is)."""
    if isinstance(exc, SalesforceUnreadable):
        return str(exc)
    why = outage_reason(exc)
    if why is None:
        return None
    return f"Salesforce {why}; cursors unchanged, the next poll reads the same rows again"


def vars_of(cursors: Cursors) -> dict[str, datetime | None]:
    return {
        "opportunities": cursors.opportunities,
        "accounts": cursors.accounts,
        "reopened": cursors.reopened,
        "deleted": cursors.deleted,
    }


def _record_events(ctx: WorkerContext, events: list[SourceEvent]) -> int:
    """Re-opened deals (that we knew as won) and deleted/merged accounts → "needs attention"
    items (worker.state.attention, each with its ledger entry), never acted on."""
    store = ctx.store
    reopened_candidates = [e for e in events if e.kind == "opportunity_reopened"]
    reopened = set(store.forget_won(e.record_id for e in reopened_candidates))
    count = 0
    for event in events:
        if event.kind == "opportunity_reopened" and event.record_id not in reopened:
            continue
        store.attention.record(
            event.kind,
            record_id=event.record_id,
            account_id=event.account_id or "",
            details={
                "master_record_id": event.master_record_id or "",
                "stage_name": event.stage_name or "",
                "system_modstamp": _cursor_text(event.system_modstamp),
            },
            trigger="poll",
        )
        count += 1
    return count


@app.task(name=POLL, ignore_result=False, acks_late=False)
def poll_closed_won(retried: bool = False) -> dict[str, Any]:
    """One incremental poll (beat sends this every CRMSYNC_POLL_INTERVAL_S).

    A poll whose login the login gate deferred (an expired session's re-login waiting out a
    refusal's short backoff) asks again once, after that wait: a poll the listener requested
    (a gap overflow, a lost replay id) has no beat behind it, and would otherwise be lost."""
    summary = run_poll(get_context())
    wait = summary.get("retry_in_s")
    if wait is not None and not retried:
        app.send_task(POLL, kwargs={"retried": True}, countdown=float(wait) + 0.5)
        log.info("poll: the login was deferred; polling again in %.1f s", float(wait) + 0.5)
    return summary
