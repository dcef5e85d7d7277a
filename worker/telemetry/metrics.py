"""Prometheus metrics: what an operator alerts on, counted where it happens.

Celery's prefork pool runs tasks in child processes, each with its own memory: a counter
incremented in a child is invisible to an HTTP server in the parent. prometheus-client's
multiprocess mode solves that with one mmap file per process in ``PROMETHEUS_MULTIPROC_DIR``,
summed at scrape time. The mode is chosen when ``prometheus_client`` is *imported*, so this
module imports it lazily, and counts nothing unless the directory is configured (only
``crmsync worker --metrics-port`` sets it, before the pool forks): the CLI's one-shot commands
pay nothing.

Counters come from Celery's ``task_postrun`` / ``task_retry`` signals (the tasks' return
values carry the outcome, so the tasks need no metrics code) and from the HTTP clients' hooks
(``record_metronome_response``, ``record_salesforce_response``). Values that live in Redis
(cursor lag, dead letters waiting, queue length) are read at scrape time by
:class:`RedisStateCollector`, so they are right even when no worker did anything lately.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SYNC_TASK = "crmsync.sync_account"
BATCH_TASK = "crmsync.sync_batch"
POLL_TASK = "crmsync.poll_closed_won"

#: Poll durations: a quiet poll is well under a second, a 100k-row backfill about a minute.
POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Waits for a Metronome turn: none when the API is idle, a few intervals when the governor
#: paces (20 ms at 50 req/s), seconds when many threads queue for a low rate or a 429's hold.
GOVERNOR_WAIT_BUCKETS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Path segments that are record ids, not endpoints: Salesforce 15/18-character ids, query
# locators (``01gXX...-2000``), UUIDs (Metronome ids), API versions stay as they are.
_ID_SEGMENT = re.compile(
    r"^(?:[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?(?:-\d+)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)


def enabled() -> bool:
    """Counting is on in processes started by ``crmsync worker --metrics-port`` (and children)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def endpoint_label(path: str) -> str:
    """A low-cardinality endpoint name: ids in the path become ``{id}``.

    A label per customer or per query page would create one time series each and exhaust
    Prometheus's memory; ``/v1/customers/{id}`` is what an operator groups by anyway.
    """
    parts = urlsplit(path).path.split("/")
    out = []
    for part in parts:
        has_digit = any(c.isdigit() for c in part)
        out.append("{id}" if has_digit and _ID_SEGMENT.match(part) else part)
    return "/".join(out) or "/"


@dataclass(frozen=True)
class _Metrics:
    syncs: Any
    dead_letters: Any
    retries: Any
    failures: Any
    polls: Any
    poll_duration: Any
    metronome_requests: Any
    salesforce_requests: Any
    salesforce_api_used: Any
    salesforce_api_limit: Any
    governor_wait: Any
    metronome_refusals: Any
    governor_redis_errors: Any
    ungoverned_requests: Any


@lru_cache(maxsize=1)
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    return _Metrics(
        syncs=Counter(
            "crmsync_syncs", "account syncs by outcome (single and batched)", ["outcome"]
        ),
        dead_letters=Counter(
            "crmsync_dead_letters", "Records that could not be synced (new dead letters)"
        ),
        retries=Counter("crmsync_task_retries", "Task retries scheduled", ["task"]),
        failures=Counter(
            "crmsync_task_failures", "Tasks that raised instead of returning", ["task"]
        ),
        polls=Counter("crmsync_polls", "Salesforce polls by status", ["status"]),
        poll_duration=Histogram(
            "crmsync_poll_duration_seconds", "Wall time of one poll", buckets=POLL_BUCKETS
        ),
        metronome_requests=Counter(
            "crmsync_metronome_requests",
            "HTTP requests to Metronome by endpoint and status (no_answer: none came)",
            ["method", "endpoint", "status"],
        ),
        salesforce_requests=Counter(
            "crmsync_salesforce_requests",
            "HTTP requests to Salesforce by endpoint and status",
            ["method", "endpoint", "status"],
        ),
        salesforce_api_used=Gauge(
            "crmsync_salesforce_api_used",
            "Salesforce daily API requests used, as of the last poll (Sforce-Limit-Info)",
            multiprocess_mode="mostrecent",
        ),
        salesforce_api_limit=Gauge(
            "crmsync_salesforce_api_limit",
            "Salesforce daily API request limit, as of the last poll",
            multiprocess_mode="mostrecent",
        ),
        governor_wait=Histogram(
            "crmsync_metronome_token_wait_seconds",
            "Time a Metronome request waited for its turn from the rate governor",
            buckets=GOVERNOR_WAIT_BUCKETS,
        ),
        metronome_refusals=Counter(
            "crmsync_metronome_rate_limited",
            "Metronome 429 answers by X-Metronome-Rate-Limit-Type (client, customer, unknown)",
            ["type"],
        ),
        governor_redis_errors=Counter(
            "crmsync_metronome_governor_redis_errors",
            "Rate governor round trips that failed because Redis was away (the call waited)",
        ),
        ungoverned_requests=Counter(
            "crmsync_metronome_ungoverned_requests",
            "Metronome requests sent by a gateway without the shared rate governor",
        ),
    )


# --- hooks called by the HTTP clients -------------------------------------------------------


def record_metronome_response(response: Any) -> None:
    """httpx response hook of the Metronome gateway: one count per attempt, retries included."""
    if enabled():
        request = response.request
        _metrics().metronome_requests.labels(
            request.method, endpoint_label(str(request.url.path)), str(response.status_code)
        ).inc()


def record_metronome_no_answer(request: Any) -> None:
    """Called by the Metronome gateway's transport when a request got no answer (refused,
    timed out, dropped): counted under status ``no_answer``, where a response hook never
    fires, so an outage shows on the same per-endpoint series as its 5xx."""
    if enabled():
        _metrics().metronome_requests.labels(
            request.method, endpoint_label(str(request.url.path)), "no_answer"
        ).inc()


def record_governor_wait(seconds: float) -> None:
    """The rate governor: how long one request waited for its turn."""
    if enabled():
        _metrics().governor_wait.observe(seconds)


def record_metronome_refusal(limit_type: str) -> None:
    """The rate governor: one 429, by ``X-Metronome-Rate-Limit-Type``."""
    if enabled():
        _metrics().metronome_refusals.labels(limit_type).inc()


def record_governor_redis_error() -> None:
    if enabled():
        _metrics().governor_redis_errors.inc()


def record_ungoverned_request() -> None:
    if enabled():
        _metrics().ungoverned_requests.inc()


def record_salesforce_response(method: str | bytes, url: str | bytes, status: int) -> None:
    """Called by the Salesforce client's session after each request (logins included)."""
    if enabled():
        method_text = method.decode() if isinstance(method, bytes) else method
        url_text = url.decode() if isinstance(url, bytes) else url
        _metrics().salesforce_requests.labels(
            method_text.upper(), endpoint_label(url_text), str(status)
        ).inc()


# --- Celery signal receivers --------------------------------------------------------------


def on_task_postrun(
    sender: Any = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    if not enabled():
        return
    name = getattr(sender, "name", "")
    metrics = _metrics()
    if state == "FAILURE":
        metrics.failures.labels(name).inc()
        return
    if not isinstance(retval, dict):
        return
    if name == SYNC_TASK and retval.get("outcome"):
        metrics.syncs.labels(str(retval["outcome"])).inc()
        if retval["outcome"] == "dead_lettered":
            metrics.dead_letters.inc()
    elif name == BATCH_TASK and isinstance(retval.get("outcomes"), dict):
        for outcome, count in retval["outcomes"].items():
            if isinstance(count, int) and count > 0 and outcome != "retried":
                metrics.syncs.labels(str(outcome)).inc(count)
                if outcome == "dead_lettered":
                    metrics.dead_letters.inc(count)
    elif name == POLL_TASK and retval.get("status"):
        metrics.polls.labels(str(retval["status"])).inc()
        if isinstance(retval.get("duration_s"), int | float):
            metrics.poll_duration.observe(float(retval["duration_s"]))
        usage = retval.get("salesforce_api_usage")
        if isinstance(usage, list | tuple) and len(usage) == 2:
            metrics.salesforce_api_used.set(float(usage[0]))
            metrics.salesforce_api_limit.set(float(usage[1]))


def on_task_retry(sender: Any = None, **_: Any) -> None:
    if enabled():
        _metrics().retries.labels(getattr(sender, "name", "")).inc()


def connect_signals() -> None:
    """Connect the receivers (idempotent: Celery dedupes receivers by identity)."""
    from celery.signals import task_postrun, task_retry

    task_postrun.connect(on_task_postrun, weak=False)
    task_retry.connect(on_task_retry, weak=False)


# --- state read from Redis at scrape time ---------------------------------------------------


class RedisStateCollector:
    """Cursor lag, dead letters waiting, open attention items and queue depth, read from Redis
    on each scrape.

    Cursor lag is "now minus the SystemModstamp high-water mark": it grows when polls fail,
    stop for quota or beat is down -- and also in a quiet org, which is why the alert uses
    ``crmsync_sync_lag_seconds`` (worker.telemetry.alerts.sync_lag). Neither needs a busy worker.
    """

    def __init__(self, store_factory: Callable[[], Any], queue: str) -> None:
        self._store_factory = store_factory
        self._queue = queue
        self._store: Any = None

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from worker.metronome.governor import governor_state
        from worker.outages.breaker import APIS, breaker_state
        from worker.telemetry.alerts import sync_lag

        lag = GaugeMetricFamily(
            "crmsync_cursor_lag_seconds",
            "Age of each poll cursor (SystemModstamp)",
            labels=["cursor"],
        )
        waiting = GaugeMetricFamily(
            "crmsync_dead_letters_pending",
            "Open dead letters (one per account or deal and kind) waiting for an operator",
        )
        attention = GaugeMetricFamily(
            "crmsync_attention_open",
            "Open 'needs attention' items (crmsync attention) by event",
            labels=["event"],
        )
        behind = GaugeMetricFamily(
            "crmsync_sync_lag_seconds",
            "How far behind Salesforce crmsync is (age of the last ok poll; the oldest cursor "
            "after a poll stopped for quota): the value the lag alert uses",
        )
        queued = GaugeMetricFamily("crmsync_queue_length", "Messages waiting in the task queue")
        listener = _ListenerFamilies()
        allowed = GaugeMetricFamily(
            "crmsync_metronome_allowed_rps",
            "Requests per second the rate governor allows now, for the whole deployment",
        )
        ceiling = GaugeMetricFamily(
            "crmsync_metronome_max_rps", "The governor's ceiling (METRONOME_MAX_RPS)"
        )
        held = GaugeMetricFamily(
            "crmsync_metronome_held_seconds",
            "Seconds every Metronome request still waits because a 429 asked for it",
        )
        breaker_open = GaugeMetricFamily(
            "crmsync_breaker_open",
            "1 while the API's circuit breaker is open (calls wait, one probe at a time)",
            labels=["api"],
        )
        parked = GaugeMetricFamily(
            "crmsync_parked_syncs", "Syncs parked until an API is back (worker/outages/parking.py)"
        )
        up = GaugeMetricFamily("crmsync_redis_up", "1 if Redis answered this scrape")
        try:
            if self._store is None:
                self._store = self._store_factory()
            store = self._store
            now = datetime.now(UTC)
            for name, value in sorted(store.cursors().items()):
                seen = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                lag.add_metric([name], max(0.0, (now - seen).total_seconds()))
            effective = sync_lag(store.cursors(), store.last_poll(), now)
            if effective is not None:
                behind.add_metric([], effective[1])
            waiting.add_metric([], float(store.dead_letter_book.open_count()))
            for event, count in sorted(store.attention.open_by_event().items()):
                attention.add_metric([event], float(count))
            for api in APIS:
                state = breaker_state(store.client, store.keys, api)
                breaker_open.add_metric([api], 1.0 if state.is_open else 0.0)
            parked.add_metric([], float(store.client.hlen(store.keys.parked_items)))
            queued.add_metric([], float(store.client.llen(self._queue)))
            listener.add(store, now.timestamp())
            governed = governor_state(store.client, store.keys)
            if governed is not None:
                allowed.add_metric([], governed.allowed_rps)
                ceiling.add_metric([], governed.max_rps)
                held.add_metric([], governed.held_s)
            up.add_metric([], 1.0)
        except Exception:  # a scrape must answer even while Redis is down
            up.add_metric([], 0.0)
            yield up
            return
        yield from (
            lag,
            behind,
            waiting,
            attention,
            queued,
            allowed,
            ceiling,
            held,
            breaker_open,
            parked,
            *listener.families(),
            up,
        )


class _ListenerFamilies:
    """The change-event listener's state as the listener itself records it in Redis
    (worker/state/listener.py), so any worker's endpoint shows it."""

    def __init__(self) -> None:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.active = GaugeMetricFamily(
            "crmsync_listener_active", "1 while a `crmsync listen` holds the lease"
        )
        self.event_age = GaugeMetricFamily(
            "crmsync_listener_last_event_age_seconds",
            "Seconds since the topic's last event was received",
            labels=["topic"],
        )
        self.keepalive_age = GaugeMetricFamily(
            "crmsync_listener_last_keepalive_age_seconds",
            "Seconds since the topic's last keepalive (Salesforce sends one at least every 270 s)",
            labels=["topic"],
        )
        self.lag = GaugeMetricFamily(
            "crmsync_listener_event_lag_seconds",
            "Receipt time minus commitTimestamp of the topic's newest event",
            labels=["topic"],
        )
        self.reconnects = CounterMetricFamily(
            "crmsync_listener_reconnects", "Resubscriptions of the topic", labels=["topic"]
        )
        self.events = CounterMetricFamily(
            "crmsync_listener_events", "Events received on the topic", labels=["topic"]
        )
        self.skipped = CounterMetricFamily(
            "crmsync_listener_events_skipped",
            "Events that could not change a customer (no query, no call)",
            labels=["topic"],
        )

    def add(self, store: Any, now: float) -> None:
        from worker.state.listener import ListenerState, listener_report

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


# --- the worker's metrics endpoint ----------------------------------------------------------


def prepare_directory(path: Path) -> Path:
    """An empty multiprocess directory: files left by a previous run would be summed in."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def serve(port: int, address: str, store_factory: Callable[[], Any], queue: str) -> Any:
    """Start the /metrics HTTP server in a daemon thread of this (the worker's main) process."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(RedisStateCollector(store_factory, queue))
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
