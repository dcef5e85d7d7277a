"""The Celery application: broker plumbing and every setting chosen for this job.

The app is created at import with static configuration only; the broker URL is attached by
:func:`configure` once the process knows which Redis it uses (REDIS_URL, or the run's embedded
server, which must not be started as a side effect of an import). ``celery -A worker.app``
works too: at import the URL is taken from REDIS_URL or from a live embedded server recorded in
the data directory.
"""

from __future__ import annotations

import os
import ssl
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, setup_logging
from kombu import pools as kombu_pools

from worker.logs import configure_logging, scrub
from worker.settings import Settings, default_data_dir
from worker.settings.sentinel import (
    is_sentinel_url,
    kombu_options,
    kombu_url,
    parse_sentinel_url,
    redbeat_options,
)
from worker.state.broker import TRANSPORT
from worker.state.connections import (
    HEALTH_CHECK_INTERVAL_S,
    SOCKET_CONNECT_TIMEOUT_S,
    SOCKET_TIMEOUT_S,
    PrimaryConnection,
    PrimarySSLConnection,
)
from worker.state.keys import QUEUE
from worker.state.server import find_embedded
from worker.telemetry import metrics

TASK_MODULES = [
    "tasks.health",
    "tasks.poll",
    "tasks.sync",
    "tasks.batch",
    "tasks.resync",
    "tasks.parked",
]

#: Hard limit for any task: a sync touches one account and a poll streams pages, both far
#: shorter than this; a hung HTTP call is cut off by the clients' own timeouts well before.
TASK_TIME_LIMIT_S = 300
#: The soft limit raises inside the task first, so it can record why it stopped.
TASK_SOFT_TIME_LIMIT_S = 240
#: Redis "acks" are a visibility timeout: an unacked message older than this is delivered
#: again. It must exceed the hard limit (or a slow task runs twice) and every countdown and
#: retry backoff (or a retry runs twice: Redis redelivers by age, not by liveness).
VISIBILITY_TIMEOUT_S = 900
#: Longest wait between task retries; kept far below the visibility timeout for that reason.
RETRY_BACKOFF_MAX_S = 120

#: How long a dead beat keeps the scheduler lock before a standby beat takes over
#: (the default of CRMSYNC_BEAT_LOCK_TIMEOUT_S).
REDBEAT_LOCK_TIMEOUT_S = 60
#: redbeat, healed after a Redis flush (worker/scheduler.py says how).
BEAT_SCHEDULER = "worker.scheduler:CrmsyncScheduler"


def static_config() -> dict[str, Any]:
    return {
        # JSON only: a pickle message from anyone who can write to Redis would run code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # Ack after the task body ran, and give the message back if the worker process died
        # (SIGKILL, OOM): without both, a killed worker silently loses the close it was syncing.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # With acks_late, prefetching more than one message would park work behind a busy
        # child where no other worker can take it.
        "worker_prefetch_multiplier": 1,
        # Redis may come up after the worker (compose, restarts): keep trying, don't exit.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            # Socket timeouts, keepalive and health checks avoid the hung-consumer cases of
            # celery#8030 and #9054 after a Redis restart.
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
            "socket_keepalive": True,
            "health_check_interval": 25,
            # No retry inside redis-py: every lost connection must reach kombu, which then
            # rebuilds all of them. With a retry, redis-py reconnected the remote-control
            # pub/sub connection behind kombu's back after a failover; kombu kept polling the
            # old socket's file number, and when another socket reused it, read the new
            # pub/sub socket with no timeout (PubSub.parse_response blocks) forever: a worker
            # alive, deaf to SIGTERM, consuming nothing (docs/reliability.md, "Failover").
            "retry_on_timeout": False,
        },
        "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
        # Results only where something reads them (ping, poll, resync for the CLI); the
        # per-account syncs report through the ledger instead.
        "task_ignore_result": True,
        "result_expires": timedelta(days=1),
        "task_time_limit": TASK_TIME_LIMIT_S,
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT_S,
        # With acks_late, a lost broker connection must cancel running tasks so their
        # messages are redelivered rather than acked on a dead channel.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Flower needs task events; the sent event shows queued work too.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Our logging setup owns the root logger (JSON lines); Celery must not replace it.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "task_default_queue": QUEUE,
        "timezone": "UTC",
        "enable_utc": True,
    }


def beat_schedule(settings: Settings) -> dict[str, Any]:
    interval = settings.poll_interval_s
    return {
        "poll-closed-won": {
            "task": "crmsync.poll_closed_won",
            "schedule": timedelta(seconds=interval),
            # A poll that could not start within one interval is superseded by the next one.
            "options": {"expires": interval},
        },
        # Parked syncs go back into the queue when due (tasks/parked.py): as often as polls,
        # so after an outage they are on their way within a poll interval of recovery.
        "drain-parked": {
            "task": "crmsync.drain_parked",
            "schedule": timedelta(seconds=interval),
            "options": {"expires": interval},
        },
    }


def _url_from_environment() -> str | None:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    data_dir = os.environ.get("CRMSYNC_DATA_DIR")
    return find_embedded(Path(data_dir) if data_dir else default_data_dir())


app = Celery("crmsync", include=TASK_MODULES)
app.conf.update(static_config())


def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery's own logging setup is replaced by ours (JSON lines; worker/logs.py)."""
    configure_logging(os.environ.get("CRMSYNC_LOG_FORMAT", "auto"), loglevel or "INFO")


def _redact_arguments(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Task arguments as events (Flower) and logs show them, with secret-looking values
    scrubbed: the message body itself is untouched."""
    if headers is not None:
        for name in ("argsrepr", "kwargsrepr"):
            if isinstance(headers.get(name), str):
                headers[name] = scrub(headers[name])


setup_logging.connect(_setup_logging, weak=False)
before_task_publish.connect(_redact_arguments, weak=False)
metrics.connect_signals()


def broker_transport(url: str) -> str | None:
    """Our kombu transport for TCP URLs: it drops a connection to a demoted primary
    (worker/state/broker.py); ``None`` leaves the URL's scheme to choose."""
    return TRANSPORT if url.startswith(("redis://", "rediss://")) else None


def redis_conf(url: str, visibility_timeout_s: int = VISIBILITY_TIMEOUT_S) -> dict[str, Any]:
    """Where the broker, the result backend and redbeat find Redis, in each one's own form.

    A ``redis-sentinel://`` URL (REDIS_SENTINELS; worker/settings/sentinel.py) becomes kombu's
    ``sentinel://…;sentinel://…`` with ``master_name`` for the broker and the results, and
    redbeat's ``redis-sentinel://`` with its sentinel options: every client asks the
    sentinels for the primary, so all of them follow a failover."""
    transport = {**static_config()["broker_transport_options"]}
    transport["visibility_timeout"] = visibility_timeout_s
    backend: dict[str, Any] = {"visibility_timeout": visibility_timeout_s}
    if not is_sentinel_url(url):
        return {
            "broker_url": url,
            "broker_transport": broker_transport(url),
            "broker_transport_options": transport,
            "result_backend": url,
            "result_backend_transport_options": backend,
            "redbeat_redis_url": url,
            "redbeat_redis_options": redbeat_plain_options(url),
        }
    target = parse_sentinel_url(url)
    tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED} if target.tls else None
    return {
        "broker_url": kombu_url(target),
        "broker_transport": None,
        "broker_transport_options": {**transport, **kombu_options(target)},
        "broker_use_ssl": tls,
        "result_backend": kombu_url(target),
        "result_backend_transport_options": {**backend, **kombu_options(target)},
        "redis_backend_use_ssl": tls,
        "redbeat_redis_url": "redis-sentinel://",
        "redbeat_redis_options": redbeat_options(target, socket_timeout=30.0),
        "redbeat_redis_use_ssl": tls,
    }


def redbeat_plain_options(url: str) -> dict[str, Any]:
    """redbeat's client, with the store's timeouts and its rule for a demoted primary
    (worker/state/connections.py): beat follows a moving endpoint like the workers."""
    if url.startswith("rediss://"):
        connection_class: type = PrimarySSLConnection
    elif url.startswith("redis://"):
        connection_class = PrimaryConnection
    else:
        return {}
    return {
        "connection_class": connection_class,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry_on_timeout": True,
    }


_initial_url = _url_from_environment()
if _initial_url:
    app.conf.update(redis_conf(_initial_url))


def configure(redis_url: str, settings: Settings) -> Celery:
    """Point the app at ``redis_url`` and install the beat schedule from ``settings``."""
    _drop_connections()
    app.conf.update(redis_conf(redis_url, settings.visibility_timeout_s))
    app.conf.update(
        beat_schedule=beat_schedule(settings),
        # One scheduler even with two beat replicas: redbeat keeps the schedule in Redis
        # behind a lock; a second beat waits on it and takes over when the first stops.
        # Our subclass also re-creates the schedule and lock after Redis lost its data.
        beat_scheduler=BEAT_SCHEDULER,
        redbeat_key_prefix=f"{settings.redis_prefix}:redbeat",
        redbeat_lock_timeout=settings.beat_lock_timeout_s,
        # Beat must wake (and renew the lock) well within the lock's timeout.
        beat_max_loop_interval=settings.beat_lock_timeout_s / 5,
    )
    # Child processes (worker, beat) started from this one find the same server.
    os.environ["REDIS_URL"] = redis_url
    return app


def _drop_connections() -> None:
    """Forget pooled broker/backend connections so a new URL takes effect in this process.

    Long-lived processes configure once; tests and ``crmsync demo`` re-point the app.
    """
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app._backend_cache = None
    app._local = threading.local()
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    # kombu also keeps producer pools per broker URL, process-wide: pointed back at a URL it
    # used before, the app would get that URL's old pool, whose connections were closed above.
    kombu_pools.reset()  # type: ignore[no-untyped-call]


def declare_queue() -> None:
    """Declare our queue and its binding before publishing.

    kombu's Redis transport routes a message through the ``_kombu.binding.*`` keys; if Redis
    was flushed or restarted empty, those are gone and a publish is *silently dropped*
    (kombu only logs "Cannot route message"). Producers cache their declarations, so the
    publishers (the poll, a re-sync, beat) re-declare explicitly: one cheap command.
    """
    with app.connection_for_write() as connection:
        app.amqp.queues[QUEUE].bind(connection.default_channel).declare()
