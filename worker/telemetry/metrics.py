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
``worker.ops.scrape.RedisStateCollector``, which the worker command hands to :func:`serve`.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
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


# --- the worker's metrics endpoint ----------------------------------------------------------


def prepare_directory(path: Path) -> Path:
    """An empty multiprocess directory: files left by a previous run would be summed in."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def serve(port: int, address: str, *collectors: Any) -> Any:
    """Start the /metrics HTTP server in a daemon thread of this (the worker's main) process.

    ``collectors`` read values at scrape time (``worker.ops.scrape.RedisStateCollector``):
    they are handed in because reading crmsync's state needs modules above this one."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for collector in collectors:
        registry.register(collector)
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
