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
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests

from mappings.contracts.engine import WON_OPPORTUNITIES_KEY
from tasks.poll_trouble import stuck_poll
from tasks.publish import EnqueueChunk, batch_publisher
from worker.app import app, declare_queue
from worker.context import WorkerContext, get_context
from worker.logs import inherit_task, running_task
from worker.outages.metronome import BreakerOpenError
from worker.outages.salesforce import outage_reason
from worker.salesforce import Cursors, SourceEvent
from worker.salesforce.errors import SalesforceUnreadable

log = logging.getLogger(__name__)

#: GET /v1/customers accepts at most 100 salesforce_account_ids per call.
FIND_BATCH = 100
#: Rows grouped per enqueue round: bounds memory while streaming; 500 is a quarter page.
CHUNK_ROWS = 500
#: A chunk's find calls go out at once (each still takes its turn from the rate governor):
#: one after another, at ~100 ms per call, they held back the chunk's syncs by half a second
#: and made the finds alone of a 100,000-row poll take 100 s.
FIND_THREADS = CHUNK_ROWS // FIND_BATCH


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


def group_by_account(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per account: the latest row wins (rows arrive in SystemModstamp order).

    The account's other won opportunities of the chunk ride along in the record (under
    ``WON_OPPORTUNITIES_KEY``, without their copy of the Account): two deals won on one
    account in one poll interval are two contracts, and the customer is still built once.
    """
    grouped: dict[str, dict[str, Any]] = {}
    others: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        account = row.get("Account")
        account_id = row.get("AccountId") or (
            account.get("Id") if isinstance(account, dict) else None
        )
        if not account_id:
            continue
        key = str(account_id)
        previous = grouped.get(key)
        if previous is not None and previous.get("Id") != row.get("Id"):
            others.setdefault(key, {})[str(previous.get("Id"))] = {
                k: v for k, v in previous.items() if k not in ("Account", WON_OPPORTUNITIES_KEY)
            }
        grouped[key] = row
    for key, extra in others.items():
        latest = grouped[key]
        extra.pop(str(latest.get("Id")), None)
        if extra:
            grouped[key] = {**latest, WON_OPPORTUNITIES_KEY: list(extra.values())}
    return grouped


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def find_absent(
    ctx: WorkerContext, records: dict[str, dict[str, Any]], *, force: bool = False
) -> set[str]:
    """Accounts (of ``records``) whose owner has no Metronome customer: one batched list call
    (GET /v1/customers?salesforce_account_ids=, 100 ids) instead of a find in every sync.

    Only accounts that will really sync are looked up: mapped cleanly, hash changed (unless
    ``force``), and no customer id cached. A hint, never a guarantee: if a customer appears
    meanwhile, the sync's create answers 409 on the identity alias and the engine adopts it.
    On any Metronome error, or while Metronome's circuit breaker is open, the hint is skipped
    (the syncs find for themselves, or park), so the poll never depends on Metronome.
    """
    from mappings import MappingError

    try:
        ctx.metronome_breaker.gate()
    except BreakerOpenError:
        return set()  # Metronome's breaker is open: no hint, the syncs park without a call
    mapped: dict[str, tuple[str, str]] = {}  # account -> (owner, state hash)
    for account_id, record in records.items():
        try:
            desired = ctx.mapping.map_record(record)
        except MappingError:
            continue
        mapped[account_id] = (desired.salesforce_account_id, desired.state_hash())
    # One round trip for the chunk's states (and their owners'), not one per account.
    states = ctx.store.account_states([*mapped, *(owner for owner, _hash in mapped.values())])
    owners: dict[str, list[str]] = {}
    for account_id, (owner, state_hash) in mapped.items():
        if not force and states[account_id].state_hash == state_hash:
            continue
        if not states[owner].customer_id:
            owners.setdefault(owner, []).append(account_id)
    absent: set[str] = set()
    pending = list(owners)
    batches = [pending[start : start + FIND_BATCH] for start in range(0, len(pending), FIND_BATCH)]

    def find(batch: list[str]) -> dict[str, str]:
        return {
            c.salesforce_account_id: c.id
            for c in ctx.gateway.list_customers(salesforce_account_ids=batch)
            if c.salesforce_account_id
        }

    try:
        with ThreadPoolExecutor(
            max_workers=FIND_THREADS,
            thread_name_prefix="find",
            initializer=inherit_task,  # their log lines name the poll's task
            initargs=(running_task(),),
        ) as pool:
            for batch, found in zip(batches, pool.map(find, batches), strict=True):
                for owner in batch:
                    if owner in found:
                        ctx.store.remember_customer(owner, found[owner])
                    else:
                        absent.update(owners[owner])
    except Exception as exc:  # the hint is optional; the syncs find for themselves
        log.warning("batched find skipped: %s", exc)
    return absent


def run_poll(
    ctx: WorkerContext, enqueue: EnqueueChunk | None = None, *, raise_outage: bool = False
) -> dict[str, Any]:
    """Read what changed, publish its syncs chunk by chunk, then move the cursors.

    ``enqueue`` publishes one chunk's syncs; the default sends ``crmsync.sync_batch``
    messages (tasks.publish). Tests pass their own to watch or interrupt a poll.
    ``raise_outage`` (``crmsync poll``, run by hand): an outage is still counted and recorded,
    then its error is raised, so the command names what it could not reach and where
    (worker/commands/errors.py) instead of a bare "no answer".

    Salesforce's circuit breaker (worker/outages/salesforce.py) comes first: while Salesforce is
    down or its quota spent, a poll makes no call and moves no cursor ("paused"), but one
    poll is the probe now and then, and its success resumes polling."""
    store = ctx.store
    started = time.monotonic()
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
        stored: dict[str, str | None] = dict(store.cursors())
        cursors = Cursors.from_json(stored or None)
        with_events = store.events_due(ctx.settings.events_interval_s)
        rows = accounts = 0
        try:
            reader = ctx.source.poll(cursors, with_events=with_events)  # logs in on first use
            for chunk in _chunks(_guarded(reader), CHUNK_ROWS):
                rows += len(chunk)
                store.mark_won(str(row["Id"]) for row in chunk if row.get("Id"))
                grouped = group_by_account(chunk)
                absent = find_absent(ctx, grouped)
                enqueue([(a, record, a in absent) for a, record in grouped.items()])
                accounts += len(grouped)
        except Exception as exc:
            reason = _outage(exc)
            if reason is None:
                # A wrong login, a missing field, no permission: one line, no traceback.
                reported = True
                return stuck_poll(ctx, exc, admission, raise_it=raise_outage, started=started)
            log.warning("poll failed: %s", reason)
            pause.outage(reason, admission)
            reported = True
            failed: dict[str, Any] = {
                "status": "failed",
                "reason": reason,
                "rows": rows,
                "enqueued": accounts,
                "finished_at": _cursor_text(datetime.now(UTC)),
                "duration_s": round(time.monotonic() - started, 3),
                "cursors": store.cursors(),
            }
            store.record_poll(failed)
            if raise_outage and not isinstance(exc, SalesforceUnreadable):
                raise
            return failed
        attention = _record_events(ctx, reader.events)
        usage = ctx.source.sf.api_usage.get("api-usage")
        summary: dict[str, Any] = {
            "status": "stopped_for_quota" if reader.stopped_for_quota else "ok",
            "rows": rows,
            "enqueued": accounts,
            "needs_attention": attention,
            "salesforce_calls": reader.salesforce_calls,
            "salesforce_api_usage": [usage.used, usage.total] if usage else None,
            "finished_at": _cursor_text(datetime.now(UTC)),
            "duration_s": round(time.monotonic() - started, 3),
        }
        if reader.stopped_for_quota:
            # The quota pauses polls at once (every poll would only spend more of it).
            pause.quota(reader.quota_reason or "quota reached")
        else:
            pause.succeeded(admission)
            new = {
                name: _cursor_text(value)
                for name, value in vars_of(reader.new_cursors).items()
                if value is not None
            }
            if not store.advance_cursors(lease, new):
                summary["status"] = "fenced_out"
                log.warning("poll finished after a newer poll took over; cursor left to it")
        reported = True
        summary["cursors"] = store.cursors()
        store.record_poll(summary)
        log.info("poll: %s", summary)
        return summary
    finally:
        if not reported:
            pause.release(admission)  # a probe that learnt nothing gives its turn back
        store.release_poll_lock(lease)


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


@app.task(name="crmsync.poll_closed_won", ignore_result=False, acks_late=False)
def poll_closed_won() -> dict[str, Any]:
    """One incremental poll (beat sends this every CRMSYNC_POLL_INTERVAL_S)."""
    return run_poll(get_context())
