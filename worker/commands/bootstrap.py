"""What every crmsync command that uses Redis does first: settings, credentials, mapping,
then Redis, then the Celery app -- cheapest check first, so a mistake is reported before
anything starts.

Two shapes:

- :func:`runtime` for commands that read or enqueue (``status``, ``poll``, ``plan``,
  ``dead-letters``...): they join the Redis of a running crmsync (REDIS_URL, or the embedded
  server ``crmsync run`` started) and never start one; without either they stop with
  "no crmsync running here".
- :func:`service_runtime` for the long-lived services (``worker``, ``run``, ``beat``, and any
  new one such as ``listen``): they validate the mapping before anything else, start or join
  the embedded server and say where its data lives, and wait a bounded time
  (CRMSYNC_REDIS_WAIT_S) for an external Redis instead of retrying forever.

Failures are raised, not printed: ``worker.cli`` turns them into one line and an exit code.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import redis

from mappings import Mapping
from worker.context import load_configured_mapping
from worker.logs import redacted_url
from worker.settings import NotConfigured, Settings, load_settings
from worker.state.connections import redis_client
from worker.state.server import EmbeddedRedis, redis_for
from worker.state.store import SyncStore

if TYPE_CHECKING:
    from celery import Celery


@dataclass
class Runtime:
    settings: Settings
    redis: EmbeddedRedis
    #: The validated mapping, when the command asked for it.
    mapping: Mapping | None = None

    @cached_property
    def app(self) -> Celery:
        """The Celery app, pointed at this Redis: configured on first use, because importing
        Celery is most of a read-only command's start-up (``status``, ``attention``,
        ``dead-letters list`` never send a task)."""
        from worker.app import configure

        return configure(self.redis.url, self.settings)

    def store(self) -> SyncStore:
        """Redis state without the mapping or any API client (for read-only commands)."""
        return SyncStore.from_url(
            self.redis.url, self.settings.redis_prefix, self.settings.ledger_max_entries
        )


def missing_credentials(settings: Settings) -> list[str]:
    """What is missing to talk to the real Salesforce and Metronome (empty: all set)."""
    missing = []
    if not settings.metronome_configured:
        missing.append("METRONOME_BEARER_TOKEN")
    if not settings.salesforce_configured:
        missing.append(
            "a Salesforce login (SALESFORCE_USERNAME + SALESFORCE_PASSWORD + "
            "SALESFORCE_SECURITY_TOKEN, or another mode: see README)"
        )
    return missing


def require_credentials(settings: Settings) -> None:
    """Refuse to start without real credentials: crmsync never falls back to an emulator."""
    missing = missing_credentials(settings)
    if missing:
        raise NotConfigured(
            "crmsync: not configured: set " + " and ".join(missing) + ". To try crmsync "
            "without credentials, run `crmsync demo` (or `crmsync sandbox` for the emulators)."
        )


@contextlib.contextmanager
def runtime(
    settings: Settings | None = None,
    *,
    needs_credentials: bool = True,
    needs_mapping: bool = True,
    start_embedded: bool = False,
    wait_for_redis_s: float = 0.0,
    needs_celery: bool = True,
) -> Iterator[Runtime]:
    """Settings → credentials → mapping → Redis → configured Celery app.

    ``start_embedded`` is for services only (see the module docstring); the embedded server is
    stopped on exit only by the process that started it. Redis must answer a PING, within
    ``wait_for_redis_s`` (0: at once). ``needs_celery=False`` (a command that only reads Redis)
    leaves Celery unimported unless ``Runtime.app`` is used; otherwise the app is configured
    here, before the command runs, because jobs publish through the process-wide app.
    """
    settings = settings or load_settings()
    if needs_credentials:
        require_credentials(settings)
    # MappingFileError names the file, line and key; raised before Redis or Celery start.
    mapping = load_configured_mapping(settings) if needs_mapping else None
    if start_embedded:
        _exit_cleanly_on_sigterm()
    redis_handle = redis_for(settings.redis_url, settings.data_dir, start=start_embedded)
    try:
        if start_embedded and not settings.redis_url:
            _say_where_the_data_lives(redis_handle)
        # One PING first (cheap): a command fails on Redis before it logs in anywhere.
        wait_for_redis(redis_handle.url, wait_for_redis_s)
        handle = Runtime(settings=settings, redis=redis_handle, mapping=mapping)
        if needs_celery:
            handle.app  # noqa: B018 -- configures the process-wide app now
        yield handle
    finally:
        redis_handle.stop()


def service_runtime(
    settings: Settings | None = None, *, needs_credentials: bool = True
) -> contextlib.AbstractContextManager[Runtime]:
    """The runtime of a long-lived service: mapping validated first, embedded Redis started or
    joined (and announced), an external Redis waited for up to CRMSYNC_REDIS_WAIT_S."""
    settings = settings or load_settings()
    return runtime(
        settings,
        needs_credentials=needs_credentials,
        needs_mapping=True,
        start_embedded=True,
        wait_for_redis_s=settings.redis_wait_s,
    )


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (docker stop, systemd, a test) before Celery installs its own handler would
    kill this process outright and orphan the embedded redis-server it started; as an exit
    instead, the ``finally`` below stops it. Celery replaces this handler once it runs."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def _say_where_the_data_lives(handle: EmbeddedRedis) -> None:
    """State kept between runs must not be a surprise: a poll queued by a stopped beat is run
    by the next worker started on the same directory."""
    verb = "started" if handle.owner else "joined"
    print(
        f"crmsync: {verb} the embedded Redis at {handle.url}, data in {handle.data_dir} "
        "(kept between runs; set REDIS_URL to use your own Redis)",
        file=sys.stderr,
        flush=True,
    )


def wait_for_redis(url: str, wait_s: float) -> None:
    """Return once Redis answers PING; raise its error after ``wait_s`` of refusals.

    A refused password is raised at once: waiting cannot fix it. Compose and Kubernetes start
    Redis and the services together, so a short wait is normal and logged once.
    """
    deadline = time.monotonic() + wait_s
    logged = False
    while True:
        client = redis_client(url, socket_connect_timeout=3, socket_timeout=5)
        try:
            client.ping()
            return
        except (
            redis.AuthenticationError,
            redis.exceptions.AuthorizationError,
            redis.ResponseError,
        ):
            raise
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                raise
            if not logged:  # printed: Celery has not set up logging yet
                print(
                    f"crmsync: waiting up to {wait_s:.0f}s for Redis at {redacted_url(url)} "
                    "(CRMSYNC_REDIS_WAIT_S)",
                    file=sys.stderr,
                    flush=True,
                )
                logged = True
        finally:
            client.close()
        time.sleep(0.5)  # a retry interval while Redis starts, not a synchronisation
