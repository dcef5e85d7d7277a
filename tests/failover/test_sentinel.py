"""Redis behind Sentinel: the primary is SIGKILLed mid-backfill, the sentinels promote the
replica, and every client (workers, this process's poll, the check) follows it by itself.

Real servers on 127.0.0.1: the stack's Redis is the primary, one replica, three sentinels
(tests/support/sentinels.py). Workers know only REDIS_SENTINELS and REDIS_SENTINEL_MASTER.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.data import seed_won_accounts
from tests.support.prewarmed import run_cli, start_service
from tests.support.sentinels import SERVICE, sentinels, wait_for_primary
from worker.app import configure
from worker.context import build_context
from worker.sandbox.failover import replicated
from worker.sandbox.metronome import MetronomeFaults
from worker.sandbox.stack import SandboxStack
from worker.state.server import RedisServer

ACCOUNTS = 120
#: Detection (1 s down-after), election and promotion, then Celery's reconnect back-off.
RESUME_S = 45.0


@pytest.fixture
def sentinel_stack(tmp_path: Path) -> Iterator[tuple[SandboxStack, RedisServer, list[int]]]:
    stack = SandboxStack(
        data_dir=tmp_path / "data",
        metronome_faults=MetronomeFaults(latency_s=0.03),
        launcher=start_service,
    )
    with stack:
        primary = stack.redis
        assert primary is not None
        with (
            replicated(primary, tmp_path) as pair,
            sentinels(primary.port, tmp_path) as ports,
        ):
            stack.extra_env.update(
                {
                    "REDIS_URL": "",  # unset: the sentinels name the server
                    "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in ports),
                    "REDIS_SENTINEL_MASTER": SERVICE,
                }
            )
            settings = stack.settings()
            assert settings.redis_url is not None
            assert settings.redis_url.startswith("redis-sentinel://")
            configure(settings.redis_url, settings)
            yield stack, pair.replica, ports
            stack.stop_workers()


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def test_sentinel_failover_mid_backfill_loses_and_doubles_nothing(
    sentinel_stack: tuple[SandboxStack, RedisServer, list[int]], tmp_path: Path
) -> None:
    stack, replica, ports = sentinel_stack
    assert stack.salesforce is not None and stack.metronome is not None
    metronome = stack.metronome
    seed_won_accounts(stack.salesforce, ACCOUNTS)
    for name in ("s1", "s2"):
        stack.start_worker(tmp_path / f"{name}.log", concurrency=2, name=name)
    stack.wait_for_worker()
    from tasks.poll import run_poll

    settings = stack.settings()
    ctx = build_context(settings, settings.redis_url)
    try:
        assert run_poll(ctx)["enqueued"] == ACCOUNTS
    finally:
        ctx.close()
    assert _wait(lambda: len(metronome.customers()) >= ACCOUNTS // 4, 60)
    assert len(metronome.customers()) < ACCOUNTS, "the backfill ended before the failover"

    assert stack.redis is not None and stack.redis.process is not None
    os.kill(stack.redis.process.pid, signal.SIGKILL)  # the primary dies under load
    stack.redis.process.wait(timeout=10)
    stack.redis.process = None
    killed_at = time.monotonic()
    for port in ports:
        wait_for_primary(port, f"127.0.0.1:{replica.port}", timeout_s=RESUME_S)

    assert _wait(lambda: len(metronome.customers()) >= ACCOUNTS, RESUME_S), (
        f"{len(metronome.customers())} of {ACCOUNTS} customers {RESUME_S:g}s after the kill"
    )
    assert len(metronome.customers()) == ACCOUNTS  # none doubled
    print(f"resumed and finished {time.monotonic() - killed_at:.1f}s after the kill")

    # `crmsync check` says which primary the sentinels name now, and a worker answers a
    # ping sent through the sentinels' broker and result backend.
    check = run_cli(stack.env(), "check", "--quick")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"the sentinels name 127.0.0.1:{replica.port} as the primary" in check.stdout, (
        check.stdout + check.stderr
    )
