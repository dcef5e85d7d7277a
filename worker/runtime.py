"""What every long-lived crmsync command does first: settings, then Redis, then the Celery app."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from celery import Celery

from worker.app import configure
from worker.context import NotConfigured
from worker.redis_server import EmbeddedRedis, redis_for
from worker.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    redis: EmbeddedRedis
    app: Celery


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
    settings: Settings | None = None, *, needs_credentials: bool = True
) -> Iterator[Runtime]:
    """Settings → (credentials check) → Redis (REDIS_URL or the run's embedded server) →
    configured Celery app. The embedded server is stopped on exit only by the process that
    started it.
    """
    settings = settings or load_settings()
    if needs_credentials:
        require_credentials(settings)
    redis_handle = redis_for(settings.redis_url, settings.data_dir)
    try:
        app = configure(redis_handle.url, settings)
        yield Runtime(settings=settings, redis=redis_handle, app=app)
    finally:
        redis_handle.stop()
