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
  session that cannot be renewed): Salesforce's breaker opens at once and one poll probes every
  ``CRMSYNC_LOGIN_BACKOFF_MAX_S``; a restart with a corrected configuration asks at once (the
  start-up schema check clears a breaker it proves wrong).

Anything :func:`~worker.salesforce.trouble.diagnose` does not recognise is re-raised: a bug
keeps its traceback.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.salesforce.trouble import diagnose

if TYPE_CHECKING:
    from worker.context import WorkerContext
    from worker.outages.breaker import Admission

log = logging.getLogger(__name__)


def stuck_poll(
    ctx: WorkerContext, exc: Exception, admission: Admission, *, raise_it: bool, started: float
) -> dict[str, Any]:
    """Record and log the poll Salesforce refused; re-raise what is not recognised."""
    trouble = diagnose(exc)
    if trouble is None:
        ctx.salesforce_pause.release(admission)
        raise exc
    pause = ctx.salesforce_pause
    if trouble.kind == "quota":
        pause.quota(trouble.line)
    elif trouble.transient or trouble.kind == "login":
        pause.release(admission)  # the login gate decides when to ask again
    else:
        pause.breaker.failed(
            f"Salesforce: {trouble.line}",
            force=True,
            probe=admission.probe,
            probe_after_s=ctx.settings.login_backoff_max_s,
        )
    log.warning(
        "poll stopped: %s",
        trouble.line,
        extra={"salesforce_trouble": trouble.kind, "transient": trouble.transient},
    )
    failed: dict[str, Any] = {
        "status": "failed",
        "reason": trouble.line,
        "trouble": trouble.kind,
        "rows": 0,
        "enqueued": 0,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "duration_s": round(time.monotonic() - started, 3),
        "cursors": ctx.store.cursors(),
    }
    ctx.store.record_poll(failed)
    if raise_it:
        raise trouble.error() from None
    return failed
