"""A loud signal when a customer could not be synced: JSON POSTs to CRMSYNC_ALERT_WEBHOOK_URL.

Six events are sent:

* ``dead_letter`` -- one per new dead-letter group (an unbilled customer until someone acts;
  a record failing again into its open group is counted there, not alerted again);
* ``needs_attention`` -- one per new "needs attention" item (worker.state.attention: a re-opened
  deal, a merged account, a changed or archived contract, a customer conflict);
* ``breaker_open`` / ``breaker_closed`` -- when an API's circuit breaker opens (Metronome or
  Salesforce is down, or the Salesforce quota is spent: syncs park, polls pause) and when it
  closes again (``worker.ops.watcher.AlertWatcher.check_breakers``), once per episode;
* ``metronome_token_refused`` -- when Metronome starts refusing METRONOME_BEARER_TOKEN (every
  sync parks until it is fixed; ``worker.ops.watcher.AlertWatcher.check_token``), once per
  episode;
* ``cursor_lag`` -- when crmsync is further behind Salesforce than
  CRMSYNC_ALERT_LAG_THRESHOLD_S (polls failing, stopped for quota, or no beat; see
  :func:`sync_lag`), once per episode, repeated hourly while it lasts, and
  ``cursor_lag_resolved`` when it ends.

This module sends (a webhook thread, the bodies, the claims); the watcher that decides when
(``worker/ops/watcher.py``) reads crmsync's state, breakers included, so it sits above. It runs
in a thread of each worker's main process and reads Redis; it never runs inside a sync, so a
slow or dead webhook cannot delay one. With several workers every watcher
sees the same entries: each alert is claimed with ``SET NX`` on a key named after it, so
exactly one worker sends it. Delivery is retried with backoff from a bounded in-memory queue;
an alert that still fails is logged (without the URL, which often embeds a token) and dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: A dead letter older than this when a watcher starts is not alerted (it was, or it predates
#: alerting); entries are claimed per id, so a restart inside the window does not repeat them.
LOOKBACK_S = 86_400
#: Claims outlive the look-back window so an entry is never alerted twice.
CLAIM_TTL_S = 2 * LOOKBACK_S
#: While the lag lasts, remind this often.
LAG_REPEAT_S = 3_600
DELIVERY_ATTEMPTS = 4
DELIVERY_TIMEOUT_S = 10.0
QUEUE_MAX = 1_000


Post = Callable[[str, bytes], int]


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(  # noqa: S310 - the operator's configured URL
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class WebhookSender:
    """Delivers alerts from a background thread; :meth:`send` never blocks the caller."""

    def __init__(
        self,
        url: str,
        *,
        post: Post = _post,
        backoff_s: float = 1.0,
        attempts: int = DELIVERY_ATTEMPTS,
    ) -> None:
        self._url = url
        self._host = urlsplit(url).hostname or "?"
        self._post = post
        self._backoff_s = backoff_s
        self._attempts = attempts
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread = threading.Thread(target=self._run, name="crmsync-alerts", daemon=True)
        self._thread.start()

    def send(self, payload: Mapping[str, Any]) -> bool:
        try:
            self._queue.put_nowait(dict(payload))
        except queue.Full:
            log.error("alert dropped: %d alerts waiting for the webhook", QUEUE_MAX)
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, sort_keys=True).encode("utf-8")
        for attempt in range(1, self._attempts + 1):
            try:
                status = self._post(self._url, body)
            except OSError as exc:
                status, why = 0, type(exc).__name__
            else:
                why = f"HTTP {status}"
            if 200 <= status < 300:
                return
            if attempt < self._attempts:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
        log.error(
            "alert %s not delivered to webhook host %s after %d attempts (%s)",
            payload.get("event"),
            self._host,
            self._attempts,
            why,
        )


def dead_letter_alert(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The webhook body for the stream entry that opened a dead-letter group (no snapshot: it
    may be large). ``entry_id`` is the group's id, what `dead-letters redrive` takes."""
    return {
        "service": "crmsync",
        "event": "dead_letter",
        "entry_id": fields.get("group") or entry_id,
        "account_id": fields.get("account_id", ""),
        "kind": fields.get("kind", ""),
        "reason": fields.get("reason", "")[:2000],
        "task_id": fields.get("task_id", ""),
        "at": fields.get("at", ""),
        "action": "fix the record or mapping, then `crmsync dead-letters redrive`",
    }


def attention_alert(item: Any) -> dict[str, Any]:
    """The webhook body for one new "needs attention" item (state.attention.AttentionItem)."""
    return {
        "service": "crmsync",
        "event": "needs_attention",
        "item_id": item.id,
        "kind": item.event,
        "record_id": item.record_id,
        "account_id": item.account_id,
        "details": item.details,
        "at": item.first_at,
        "action": f"{item.what_to_do}; then `crmsync attention ack {item.id}`",
    }


def parse_time(value: str) -> datetime:
    """An ISO timestamp as Redis holds it (Salesforce writes a trailing Z)."""
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def sync_lag(
    cursors: Mapping[str, str], last_poll: Mapping[str, Any], now: datetime
) -> tuple[str, float] | None:
    """How far behind Salesforce crmsync is, in seconds, and what that is measured from.

    A cursor is the newest SystemModstamp seen, so in a quiet org its age grows although
    every poll succeeds: alerting on it would page someone every quiet weekend. After an ``ok``
    poll everything changed before it was enqueued, so the lag is the age of the last ``ok``
    poll (a failing poll records nothing, so that age keeps growing). When the last poll
    stopped for quota, the cursors did not move: the oldest cursor is the honest lag.
    """
    finished = last_poll.get("finished_at")
    if last_poll.get("status") == "ok" and isinstance(finished, str):
        return "last_ok_poll", max(0.0, (now - parse_time(finished)).total_seconds())
    return worst_lag(cursors, now)


def worst_lag(cursors: Mapping[str, str], now: datetime) -> tuple[str, float] | None:
    """The cursor furthest behind and its lag in seconds (None before the first poll)."""
    worst: tuple[str, float] | None = None
    for name, value in cursors.items():
        lag = (now - parse_time(value)).total_seconds()
        if worst is None or lag > worst[1]:
            worst = (name, lag)
    return worst


def claim(client: Any, prefix: str, name: str, ttl_s: int) -> bool:
    """True for the one process that may send alert ``name`` now (SET NX with a TTL): many
    workers, or a listener and its standby, see the same condition and alert once."""
    from worker.state.keys import Keys

    return bool(client.set(Keys(prefix).alerted(name), "1", nx=True, ex=ttl_s))
