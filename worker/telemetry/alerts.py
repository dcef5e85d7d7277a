"""A loud signal when a customer could not be synced: JSON POSTs to CRMSYNC_ALERT_WEBHOOK_URL.

Five events are sent:

* ``dead_letter`` -- one per new dead-letter group (an unbilled customer until someone acts;
  a record failing again into its open group is counted there, not alerted again);
* ``needs_attention`` -- one per new "needs attention" item (worker.state.attention: a re-opened
  deal, a merged account, a changed or archived contract, a customer conflict);
* ``breaker_open`` / ``breaker_closed`` -- when an API's circuit breaker opens (Metronome or
  Salesforce is down, or the Salesforce quota is spent: syncs park, polls pause) and when it
  closes again (:meth:`AlertWatcher.check_breakers`), once per episode;
* ``cursor_lag`` -- when crmsync is further behind Salesforce than
  CRMSYNC_ALERT_LAG_THRESHOLD_S (polls failing, stopped for quota, or no beat; see
  :func:`sync_lag`), once per episode, repeated hourly while it lasts, and
  ``cursor_lag_resolved`` when it ends.

The watcher runs in a thread of each worker's main process and reads Redis; it never runs
inside a sync, so a slow or dead webhook cannot delay one. With several workers every watcher
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def breaker_alert(event: str, state: Any, parked: int) -> dict[str, Any]:
    """The webhook body for a breaker that opened or closed (``state``: a BreakerState)."""
    from worker.outages.breaker import iso

    body: dict[str, Any] = {
        "service": "crmsync",
        "event": event,
        "api": state.api,
        "opened_at": iso(state.opened_at_ms),
        "reason": (state.reason or "")[:2000],
        "parked": parked,
    }
    if event == "breaker_open":
        body["action"] = (
            "nothing is lost: syncs park and polls pause until a probe succeeds; check the "
            f"{state.api} status page, then `crmsync status` / `crmsync parked list`"
        )
    else:
        body["closed_at"] = iso(state.closed_at_ms)
        if state.closed_at_ms is not None and state.opened_at_ms is not None:
            body["outage_s"] = round((state.closed_at_ms - state.opened_at_ms) / 1000, 1)
        body["action"] = "none: parked syncs drain by themselves (`crmsync parked list`)"
    return body


def _parse(value: str) -> datetime:
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
        return "last_ok_poll", max(0.0, (now - _parse(finished)).total_seconds())
    return worst_lag(cursors, now)


def worst_lag(cursors: Mapping[str, str], now: datetime) -> tuple[str, float] | None:
    """The cursor furthest behind and its lag in seconds (None before the first poll)."""
    worst: tuple[str, float] | None = None
    for name, value in cursors.items():
        lag = (now - _parse(value)).total_seconds()
        if worst is None or lag > worst[1]:
            worst = (name, lag)
    return worst


def claim(client: Any, prefix: str, name: str, ttl_s: int) -> bool:
    """True for the one process that may send alert ``name`` now (SET NX with a TTL): many
    workers, or a listener and its standby, see the same condition and alert once."""
    from worker.state.keys import Keys

    return bool(client.set(Keys(prefix).alerted(name), "1", nx=True, ex=ttl_s))


@dataclass
class AlertWatcher:
    """Looks for new dead letters and cursor lag every ``interval_s``; claims, then sends."""

    store: Any  # worker.state.store.SyncStore
    sender: WebhookSender
    lag_threshold_s: float
    interval_s: float = 15.0
    _last_id: str = ""
    _last_attention: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _claim(self, name: str, ttl_s: int) -> bool:
        key = self.store.keys.alerted(name)
        return bool(self.store.client.set(key, "1", nx=True, ex=ttl_s))

    def check_dead_letters(self) -> int:
        if not self._last_id:
            self._last_id = f"{int((time.time() - LOOKBACK_S) * 1000)}-0"
        entries = self.store.client.xrange(
            self.store.keys.dead_letters, min=f"({self._last_id}", count=500
        )
        sent = 0
        for entry_id, fields in entries:
            self._last_id = entry_id
            if fields.get("opened", "1") != "1":
                continue  # one more attempt of an open group: counted there, not re-alerted
            if self._claim(f"dead-letter:{entry_id}", CLAIM_TTL_S):
                self.sender.send(dead_letter_alert(entry_id, fields))
                sent += 1
        return sent

    def check_attention(self, now: datetime | None = None) -> int:
        """One alert per open item first seen within the look-back (claimed per item id)."""
        cutoff = (now or datetime.now(UTC)).timestamp() - LOOKBACK_S
        sent = 0
        for item in self.store.attention.open_items_after(self._last_attention):
            self._last_attention = max(self._last_attention, int(item.id))
            if item.first_at and _parse(item.first_at).timestamp() < cutoff:
                continue
            if self._claim(f"attention:{item.id}", CLAIM_TTL_S):
                self.sender.send(attention_alert(item))
                sent += 1
        return sent

    def check_lag(self, now: datetime | None = None) -> bool:
        worst = sync_lag(self.store.cursors(), self.store.last_poll(), now or datetime.now(UTC))
        key = self.store.keys.alerted("cursor-lag")
        if worst is None or worst[1] <= self.lag_threshold_s:
            if self.store.client.delete(key):
                self.sender.send({"service": "crmsync", "event": "cursor_lag_resolved"})
            return False
        if not self._claim("cursor-lag", LAG_REPEAT_S):
            return False
        name, lag = worst
        self.sender.send(
            {
                "service": "crmsync",
                "event": "cursor_lag",
                "cursor": name,
                "lag_s": round(lag, 1),
                "threshold_s": self.lag_threshold_s,
                "action": "check `crmsync status`, the beat service and Salesforce quota",
            }
        )
        return True

    def check_breakers(self, now_ms: float | None = None) -> int:
        """One ``breaker_open`` per episode of an open breaker (claimed by when it opened) and
        one ``breaker_closed`` when it ends (claimed by when it closed)."""
        from worker.outages.breaker import APIS, breaker_state

        sent = 0
        parked = int(self.store.client.hlen(self.store.keys.parked_items))
        for api in APIS:
            state = breaker_state(self.store.client, self.store.keys, api)
            moment = state.now_ms if now_ms is None else now_ms
            if state.is_open and state.opened_at_ms is not None:
                event, claim = "breaker_open", f"breaker-open:{api}:{int(state.opened_at_ms)}"
            elif (
                not state.is_open
                and state.closed_at_ms is not None
                and state.opened_at_ms is not None
                and moment - state.closed_at_ms < LOOKBACK_S * 1000
            ):
                event, claim = "breaker_closed", f"breaker-closed:{api}:{int(state.closed_at_ms)}"
            else:
                continue
            if self._claim(claim, CLAIM_TTL_S):
                self.sender.send(breaker_alert(event, state, parked))
                sent += 1
        return sent

    def check_once(self) -> None:
        self.check_dead_letters()
        self.check_attention()
        self.check_lag()
        self.check_breakers()

    def start(self) -> AlertWatcher:
        self._thread = threading.Thread(target=self._run, name="crmsync-alert-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sender.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception as exc:  # Redis down: try again next round, never die
                log.warning("alert check failed: %s", type(exc).__name__)
            self._stop.wait(self.interval_s)


def start_watcher(settings: Any, store_factory: Callable[[], Any]) -> AlertWatcher | None:
    """The watcher for ``settings`` (None when no webhook is configured)."""
    url = settings.alert_webhook_url
    if not url:
        return None
    return AlertWatcher(
        store=store_factory(),
        sender=WebhookSender(url),
        lag_threshold_s=settings.alert_lag_threshold_s,
        interval_s=settings.alert_check_interval_s,
    ).start()
