"""The alert watcher: looks at crmsync's state in Redis and decides which alert is due.

It runs in a thread of each worker's main process, every CRMSYNC_ALERT_CHECK_INTERVAL_S, and
sends through :class:`worker.telemetry.alerts.WebhookSender` (the events and their bodies are
described there). With several workers every watcher sees the same entries: each alert is
claimed with ``SET NX`` on a key named after it, so exactly one worker sends it. It reads the
circuit breakers, which is why it lives here and not beside the sender.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.outages.breaker import APIS, breaker_state, iso
from worker.state.metronome_token import TokenRefusals
from worker.telemetry.alerts import (
    CLAIM_TTL_S,
    LAG_REPEAT_S,
    LOOKBACK_S,
    WebhookSender,
    attention_alert,
    dead_letter_alert,
    parse_time,
    sync_lag,
)

log = logging.getLogger(__name__)


def breaker_alert(event: str, state: Any, parked: int) -> dict[str, Any]:
    """The webhook body for a breaker that opened or closed (``state``: a BreakerState)."""
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
        return bool(self.store.claim_alert(name, ttl_s))

    def check_dead_letters(self) -> int:
        if not self._last_id:
            self._last_id = f"{int((time.time() - LOOKBACK_S) * 1000)}-0"
        entries = self.store.dead_letter_book.stream_after(self._last_id, 500)
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
            if item.first_at and parse_time(item.first_at).timestamp() < cutoff:
                continue
            if self._claim(f"attention:{item.id}", CLAIM_TTL_S):
                self.sender.send(attention_alert(item))
                sent += 1
        return sent

    def check_lag(self, now: datetime | None = None) -> bool:
        worst = sync_lag(self.store.cursors(), self.store.last_poll(), now or datetime.now(UTC))
        if worst is None or worst[1] <= self.lag_threshold_s:
            if self.store.clear_alert("cursor-lag"):
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
        sent = 0
        parked = self.store.parked_count()
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

    def check_token(self) -> bool:
        """One ``metronome_token_refused`` per episode of Metronome refusing the token
        (claimed by the token's fingerprint and when it began): every sync parks until a
        person fixes it."""
        refusal = TokenRefusals(self.store.client, self.store.keys).state()
        if not refusal.refusing or refusal.since is None:
            return False
        claim = f"metronome-token:{refusal.fingerprint}:{int(refusal.since * 1000)}"
        if not self._claim(claim, CLAIM_TTL_S):
            return False
        self.sender.send(
            {
                "service": "crmsync",
                "event": "metronome_token_refused",
                "since": refusal.as_dict()["since"],
                "token_sha256": refusal.fingerprint,
                "base_url": refusal.base_url,
                "reason": f"{refusal.status} {refusal.reason}".strip()[:500],
                "parked": self.store.parked_count(),
                "action": "fix METRONOME_BEARER_TOKEN (revoked, mistyped, or for another "
                "environment) and restart; parked syncs drain by themselves",
            }
        )
        return True

    def check_once(self) -> None:
        self.check_dead_letters()
        self.check_attention()
        self.check_lag()
        self.check_breakers()
        self.check_token()

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
