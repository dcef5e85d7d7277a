"""What every long-lived crmsync command does first: settings, then Redis, then the Celery app."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from celery import Celery

from worker.app import configure
from worker.redis_server import EmbeddedRedis, redis_for
from worker.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    redis: EmbeddedRedis
    app: Celery


@contextlib.contextmanager
def runtime(settings: Settings | None = None) -> Iterator[Runtime]:
    """Settings → Redis (REDIS_URL or the run's embedded server) → configured Celery app.

    The embedded server is stopped on exit only by the process that started it.
    """
    settings = settings or load_settings()
    redis_handle = redis_for(settings.redis_url, settings.data_dir)
    try:
        app = configure(redis_handle.url, settings)
        yield Runtime(settings=settings, redis=redis_handle, app=app)
    finally:
        redis_handle.stop()
