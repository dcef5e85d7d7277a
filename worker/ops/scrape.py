"""crmsync's state in Redis, read on each Prometheus scrape.

Cursor lag, dead letters waiting, open attention items, queue depth, the circuit breakers,
parked syncs, the rate governor and the change-event listener are all kept in Redis by whoever
changed them last, so any worker's ``/metrics`` shows them, right even when no worker did
anything lately. Reading them needs the breaker and the governor, which sit above the metrics
module (:mod:`worker.telemetry.metrics` only counts what happens); that is why this collector
lives here, with the operator's other read-outs, and is handed to ``metrics.serve``.

Cursor lag is "now minus the SystemModstamp high-water mark": it grows when polls fail, stop for
quota or beat is down -- and also in a quiet org, which is why the alert uses
``crmsync_sync_lag_seconds`` (:func:`worker.telemetry.alerts.sync_lag`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.outages.breaker import APIS, breaker_state
from worker.state.listener import ListenerState, listener_report
from worker.state.logins import LoginBackoff
from worker.state.metronome_token import TokenRefusals
from worker.telemetry.alerts import sync_lag


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, documentation, labels=labels)


def _counter(name: str, documentation: str, labels: list[str] | None = None) -> Any:
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, documentation, labels=labels)


@dataclass
class _SyncFamilies:
    """How far behind crmsync is and what waits for an operator or a worker."""

    lag: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_cursor_lag_seconds", "Age of each poll cursor (SystemModstamp)", ["cursor"]
        )
    )
    behind: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_sync_lag_seconds",
            "How far behind Salesforce crmsync is (age of the last ok poll; the oldest cursor "
            "after a poll stopped for quota): the value the lag alert uses",
        )
    )
    waiting: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_dead_letters_pending",
            "Open dead letters (one per account or deal and kind) waiting for an operator",
        )
    )
    attention: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_attention_open",
            "Open 'needs attention' items (crmsync attention) by event",
            ["event"],
        )
    )
    queued: Any = field(
        default_factory=lambda: _gauge("crmsync_queue_length", "Messages waiting in the task queue")
    )

    def add(self, store: Any, queue: str, now: datetime) -> None:
        for name, value in sorted(store.cursors().items()):
            seen = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            self.lag.add_metric([name], max(0.0, (now - seen).total_seconds()))
        effective = sync_lag(store.cursors(), store.last_poll(), now)
        if effective is not None:
            self.behind.add_metric([], effective[1])
        self.waiting.add_metric([], float(store.dead_letter_book.open_count()))
        for event, count in sorted(store.attention.open_by_event().items()):
            self.attention.add_metric([event], float(count))
        self.queued.add_metric([], float(store.queued_messages(queue)))

    def families(self) -> list[Any]:
        return [self.lag, self.behind, self.waiting, self.attention, self.queued]


@dataclass
class _MetronomeFamilies:
    """The rate governor's shared state: what every worker's requests pace themselves by."""

    allowed: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_metronome_allowed_rps",
            "Requests per second the rate governor allows now, for the whole deployment",
        )
    )
    ceiling: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_metronome_max_rps", "The governor's ceiling (METRONOME_MAX_RPS)"
        )
    )
    held: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_metronome_held_seconds",
            "Seconds every Metronome request still waits because a 429 asked for it",
        )
    )

    def add(self, store: Any) -> None:
        governed = store.governor_state()
        if governed is not None:
            self.allowed.add_metric([], governed.allowed_rps)
            self.ceiling.add_metric([], governed.max_rps)
            self.held.add_metric([], governed.held_s)

    def families(self) -> list[Any]:
        return [self.allowed, self.ceiling, self.held]


@dataclass
class _OutageFamilies:
    """The circuit breakers and the syncs parked behind them."""

    breaker_open: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_breaker_open",
            "1 while the API's circuit breaker is open (calls wait, one probe at a time)",
            ["api"],
        )
    )
    parked: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_parked_syncs", "Syncs parked until an API is back (worker/outages/parking.py)"
        )
    )
    login_refusals: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_salesforce_login_refusals",
            "Consecutive refusals of the Salesforce login or its session (0: logins work); "
            "logins back off while it is above 0 (worker/state/logins.py)",
        )
    )

    token_refused: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_metronome_token_refused",
            "1 while Metronome refuses METRONOME_BEARER_TOKEN (401/403): syncs park and one "
            "probe asks again per backoff (worker/state/metronome_token.py)",
        )
    )

    def add(self, store: Any) -> None:
        for api in APIS:
            state = breaker_state(store.client, store.keys, api)
            self.breaker_open.add_metric([api], 1.0 if state.is_open else 0.0)
        self.parked.add_metric([], float(store.parked_count()))
        refusals = LoginBackoff(store.client, store.keys).state()
        self.login_refusals.add_metric([], float(refusals.failures))
        token = TokenRefusals(store.client, store.keys).state()
        self.token_refused.add_metric([], 1.0 if token.refusing else 0.0)

    def families(self) -> list[Any]:
        return [self.breaker_open, self.parked, self.login_refusals, self.token_refused]


@dataclass
class _ListenerFamilies:
    """The change-event listener's state as the listener itself records it in Redis
    (worker/state/listener.py), so any worker's endpoint shows it."""

    active: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_listener_active", "1 while a `crmsync listen` holds the lease"
        )
    )
    event_age: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_listener_last_event_age_seconds",
            "Seconds since the topic's last event was received",
            ["topic"],
        )
    )
    keepalive_age: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_listener_last_keepalive_age_seconds",
            "Seconds since the topic's last keepalive (Salesforce sends one at least every 270 s)",
            ["topic"],
        )
    )
    lag: Any = field(
        default_factory=lambda: _gauge(
            "crmsync_listener_event_lag_seconds",
            "Receipt time minus commitTimestamp of the topic's newest event",
            ["topic"],
        )
    )
    reconnects: Any = field(
        default_factory=lambda: _counter(
            "crmsync_listener_reconnects", "Resubscriptions of the topic", ["topic"]
        )
    )
    events: Any = field(
        default_factory=lambda: _counter(
            "crmsync_listener_events", "Events received on the topic", ["topic"]
        )
    )
    skipped: Any = field(
        default_factory=lambda: _counter(
            "crmsync_listener_events_skipped",
            "Events that could not change a customer (no query, no call)",
            ["topic"],
        )
    )

    def add(self, store: Any, now: float) -> None:
        report = listener_report(
            ListenerState(store.client, store.keys), now, with_replay_ids=False
        )
        self.active.add_metric([], 1.0 if report["active"] else 0.0)
        for topic, row in report["topics"].items():
            if "last_event_age_s" in row:
                self.event_age.add_metric([topic], row["last_event_age_s"])
            if "last_keepalive_age_s" in row:
                self.keepalive_age.add_metric([topic], row["last_keepalive_age_s"])
            if row["event_lag_s"] is not None:
                self.lag.add_metric([topic], row["event_lag_s"])
            self.reconnects.add_metric([topic], row["reconnects"])
            self.events.add_metric([topic], row["events"])
            self.skipped.add_metric([topic], row["skipped"])

    def families(self) -> list[Any]:
        return [
            self.active,
            self.event_age,
            self.keepalive_age,
            self.lag,
            self.reconnects,
            self.events,
            self.skipped,
        ]


class RedisStateCollector:
    """A prometheus-client custom collector: each scrape reads Redis once, in named steps.

    A scrape must answer even while Redis is down: then only ``crmsync_redis_up 0`` is
    served, never a half-filled set of families.
    """

    def __init__(self, store_factory: Callable[[], Any], queue: str) -> None:
        self._store_factory = store_factory
        self._queue = queue
        self._store: Any = None

    def collect(self) -> Iterator[Any]:
        up = _gauge("crmsync_redis_up", "1 if Redis answered this scrape")
        try:
            families = self._read(self._connected())
        except Exception:  # a scrape must answer even while Redis is down
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield from (*families, up)

    def _connected(self) -> Any:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _read(self, store: Any) -> list[Any]:
        now = datetime.now(UTC)
        syncs, metronome = _SyncFamilies(), _MetronomeFamilies()
        outages, listener = _OutageFamilies(), _ListenerFamilies()
        syncs.add(store, self._queue, now)
        outages.add(store)
        listener.add(store, now.timestamp())
        metronome.add(store)
        return [
            *syncs.families(),
            *metronome.families(),
            *outages.families(),
            *listener.families(),
        ]
