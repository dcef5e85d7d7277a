"""Celery plumbing for the sync tasks, in one place: task options, the failure hook, the
signals that catch messages no task body saw, and what a sync's outcome means to Celery.

Task modules hold tasks; what Celery must be told about them lives here, each choice with
the failure it prevents. Importing a task module imports this one, so the signal handlers
are connected in every worker process that can run a sync.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from celery import Task, signals
from celery.backends.base import DisabledBackend

from worker.app import app, declare_queue
from worker.context import get_context
from worker.syncing.outcomes import Done, Retry, backoff

#: The sync's log lines keep the logger name operators filter on.
log = logging.getLogger("tasks.sync")


def dead_letter_message(kind: str, reason: str, account_id: Any, body: Any, task_id: str) -> None:
    """Record a message our task body never handled; never raises (it runs in Celery's own
    error paths, where a second exception would hide the first)."""
    try:
        account = str(account_id)[:40] if isinstance(account_id, str) else "-"
        store = get_context().store
        store.dead_letter(
            account_id=account,
            kind=kind,
            reason=reason[:2000],
            task_id=task_id[:200],
            snapshot={"raw": repr(body)[:2000]},
        )
        store.count_outcome("dead_lettered")
        log.warning("dead-lettered message %s (%s): %s", task_id[:200], kind, reason[:500])
    except Exception as exc:  # Redis down: the message is redelivered or rescanned later
        log.error("could not dead-letter message %s (%s): %s", task_id[:200], kind, exc)


class DeadLetterOnFailure(Task):  # type: ignore[misc]
    """A sync that fails *outside* run_sync's own handling still leaves a dead letter.

    Celery raises a TypeError before our code runs when a message has the wrong arguments
    (a hand-made ``celery call``, an old producer): by default that is only a FAILURE in the
    worker log and the message is acked and gone. Here it becomes a dead letter with the
    reason, so an operator sees it next to the records that could not map.
    """

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        kind = "malformed_message" if isinstance(exc, TypeError) else "task_failed"
        first = args[0] if isinstance(args, list | tuple) and args else None
        dead_letter_message(
            kind,
            f"{type(exc).__name__}: {exc}",
            first,
            {"args": args, "kwargs": kwargs},
            str(task_id),
        )


def _on_unknown_task(
    sender: Any = None,
    message: Any = None,
    exc: Any = None,
    name: Any = None,
    id: Any = None,
    **_: Any,
) -> None:
    """A message naming a task this worker does not have (not ours, or a typo): Celery logs
    and discards it; we also keep it as a dead letter."""
    dead_letter_message(
        "unknown_task",
        f"no task named {str(name)[:200]!r} is registered here",
        None,
        getattr(message, "body", None),
        str(id),
    )


def _on_rejected_message(
    sender: Any = None, message: Any = None, exc: Any = None, **_: Any
) -> None:
    """A message Celery cannot even read as a task (no task headers, bad protocol)."""
    headers = getattr(message, "headers", None) or {}
    dead_letter_message(
        "rejected_message",
        f"not a task message: {exc!r}" if exc is not None else "not a task message",
        None,
        getattr(message, "body", None),
        str(headers.get("id", "-")) if isinstance(headers, dict) else "-",
    )


# Connected by call, not as decorators: the handlers stay typed functions.
signals.task_unknown.connect(_on_unknown_task)
signals.task_rejected.connect(_on_rejected_message)


#: What both sync tasks (one account, a batch) are: acked late (a killed worker's message is
#: redelivered), never capped by Celery's own retry count (run_sync keeps the budget), and a
#: failure outside run_sync's handling becomes a dead letter. No result backend: their results
#: are never read (the ledger is the record), and on a lost broker connection Celery cancels a
#: running one by writing its RETRY state to the backend -- the same Redis, down at that moment
#: -- and when that write fails it takes the killed task for revoked and acks its message: the
#: batch running during a Redis restart was lost (chaos run, seed 11: 18 accounts missing).
SYNC_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "max_retries": None,
    "acks_late": True,
    "base": DeadLetterOnFailure,
    "backend": DisabledBackend(app),
}


def retry_while_redis_is_away(task: Task, what: str, exc: Exception) -> Exception:
    """The retry to raise when Redis is unreachable mid-sync (a restart, a failover): a
    failed task is acked like a successful one, so its close would be lost until the record
    changes; a retry waits for Redis instead."""
    log.warning("redis unreachable during %s: %s; retrying", what, exc)
    settings = get_context().settings
    wait = backoff(
        int(task.request.retries),
        settings.retry_immediately,
        visibility_timeout_s=settings.visibility_timeout_s,
    )
    return cast(Exception, task.retry(countdown=wait, exc=None))


def answer_sync(task: Task, result: Done | Retry) -> dict[str, Any]:
    """A single-account sync's outcome as Celery needs it: a Retry is Celery's retry with its
    countdown (counted, and the queue declared first: a retry is a publish, and kombu drops a
    publish whose routing keys Redis lost); a Done is the task's result (what Flower shows)."""
    if isinstance(result, Retry):
        get_context().store.count_outcome("retried")
        declare_queue()
        raise task.retry(countdown=result.countdown, exc=None)
    return {
        "outcome": result.outcome,
        "customer_id": result.customer_id,
        "calls": result.calls,
        "contracts_created": result.contracts_created,
    }
