"""A poll that Salesforce refused for a reason a person must see: one line, no traceback.

``run_poll`` hands here every failure that is not an outage (the breaker's business). The poll
is recorded as failed with the line that names what to fix (``crmsync status`` shows it), the
worker logs that one line (no traceback, never simple-salesforce's ``{url}``/``{content}``
template), and the task returns normally: Celery has nothing to wrap, so no
``UnpickleableExceptionWrapper`` either.

Then, so the next polls do not ask the same question every few seconds:

- **transient** (logins backing off, the daily quota): the login gate or the quota pause
  already decides when Salesforce is asked again;
- **permanent** (a field the org does not have or the user cannot read, a permission missing, a
  session that cannot be renewed): polls stop asking until the configuration changes, or at
  the latest ``CRMSYNC_LOGIN_BACKOFF_MAX_S`` later (worker/state/stops.py); each stopped poll
  is recorded with the same line.

Anything :func:`~worker.salesforce.trouble.diagnose` does not recognise is re-raised: a bug
keeps its traceback.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.salesforce.logins import login_fingerprint
from worker.salesforce.trouble import diagnose
from worker.state.stops import SalesforceStops

if TYPE_CHECKING:
    from worker.context import WorkerContext
    from worker.outages.breaker import Admission

log = logging.getLogger(__name__)


def configuration_fingerprint(ctx: WorkerContext) -> str:
    """The login settings and the fields the mapping reads: what a permanent refusal was about."""
    fields = ",".join([*ctx.mapping.opportunity_fields(), *ctx.mapping.account_fields()])
    digest = hashlib.sha256(f"{login_fingerprint(ctx.settings)}|{fields}".encode())
    return digest.hexdigest()[:16]


def stopped_poll(ctx: WorkerContext, started: float) -> dict[str, Any] | None:
    """The summary of a poll that does not ask, while a permanent refusal stands for this
    configuration; None when the poll should ask."""
    stops = SalesforceStops(ctx.store.client, ctx.store.keys)
    stop = stops.current()
    if stop is None:
        return None
    if stop.fingerprint != configuration_fingerprint(ctx):
        stops.clear()  # the configuration changed: ask again now
        return None
    log.info("poll stopped (the configuration has not changed since): %s", stop.line)
    return _record(ctx, stop.kind, stop.line, started, stopped=True)


def stuck_poll(
    ctx: WorkerContext, exc: Exception, admission: Admission, *, raise_it: bool, started: float
) -> dict[str, Any]:
    """Record and log the poll Salesforce refused; re-raise what is not recognised."""
    pause = ctx.salesforce_pause
    trouble = diagnose(exc)
    if trouble is None:
        pause.release(admission)
        raise exc
    if trouble.kind == "quota":
        pause.quota(trouble.line)
    else:
        pause.release(admission)  # not an outage: the breaker learns nothing
    if not trouble.transient and trouble.kind != "login":  # logins have the login gate
        SalesforceStops(ctx.store.client, ctx.store.keys).record(
            configuration_fingerprint(ctx),
            trouble.kind,
            trouble.line,
            ctx.settings.login_backoff_max_s,
        )
    log.warning(
        "poll stopped: %s",
        trouble.line,
        extra={"salesforce_trouble": trouble.kind, "transient": trouble.transient},
    )
    failed = _record(ctx, trouble.kind, trouble.line, started, stopped=False)
    if trouble.kind == "login" and trouble.transient:
        # The login gate only deferred the login (an expired session's re-login waits its
        # turn): the task asks again once it may (tasks/poll.py), or a requested poll is lost.
        failed["retry_in_s"] = round(max(trouble.wait_s, 0.0), 3)
    if raise_it:
        raise trouble.error() from None
    return failed


def _record(
    ctx: WorkerContext, kind: str, line: str, started: float, *, stopped: bool
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "status": "failed",
        "reason": line,
        "trouble": kind,
        "asked_salesforce": not stopped,
        "rows": 0,
        "enqueued": 0,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "duration_s": round(time.monotonic() - started, 3),
        "cursors": ctx.store.cursors(),
    }
    ctx.store.record_poll(summary)
    return summary
