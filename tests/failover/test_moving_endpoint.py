"""A managed Redis fails over under a fixed REDIS_URL while workers backfill.

Real servers on 127.0.0.1: the stack's Redis is the primary, a replica follows it, and the
workers reach it only through an endpoint that moves to the promoted replica while the old
primary is SIGKILLed (worker/sandbox/failover.py). Before the fix, both workers stayed alive
but consumed nothing, blocked in a pub/sub read, answered no ping and ignored SIGTERM.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.data import seed_won_accounts
from tests.support.prewarmed import run_cli, start_service
from worker.app import configure
from worker.sandbox.failover import ReplicatedRedis, replicated
from worker.sandbox.metronome import MetronomeFaults
from worker.sandbox.stack import SandboxStack
from worker.state.consumers import TICK_S

ACCOUNTS = 120
#: The issue's promise: every process goes on consuming within 30 s of the failover.
RESUME_S = 30.0
WORKERS = ("f1", "f2")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[SandboxStack, ReplicatedRedis]]:
    # Metronome answers a little slowly, so the backfill is still running at the failover.
    stack = SandboxStack(
        data_dir=tmp_path / "data",
        metronome_faults=MetronomeFaults(latency_s=0.03),
        launcher=start_service,
    )
    with stack:
        assert stack.redis is not None
        with replicated(stack.redis, tmp_path) as redis_pair:
            # Every process, this one included, knows Redis only by the endpoint's URL.
            stack.extra_env["REDIS_URL"] = redis_pair.url
            configure(redis_pair.url, stack.settings())
            yield stack, redis_pair
            stack.stop_workers()


def _customers(stack: SandboxStack) -> int:
    assert stack.metronome is not None
    return len(stack.metronome.customers())


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def test_workers_resume_after_the_endpoint_moves(
    cluster: tuple[SandboxStack, ReplicatedRedis], tmp_path: Path
) -> None:
    stack, redis_pair = cluster
    assert stack.salesforce is not None
    seed_won_accounts(stack.salesforce, ACCOUNTS)
    workers = [
        stack.start_worker(tmp_path / f"{name}.log", concurrency=2, name=name) for name in WORKERS
    ]
    stack.wait_for_worker()
    from tasks.poll import run_poll

    ctx = stack.context()
    try:
        assert run_poll(ctx)["enqueued"] == ACCOUNTS
    finally:
        ctx.close()
    assert _wait(lambda: _customers(stack) >= ACCOUNTS // 4, 60)
    assert _customers(stack) < ACCOUNTS, "the backfill ended before the failover"

    redis_pair.fail_over()
    failed_over_at = time.monotonic()

    # Nothing lost, nothing doubled (acks_late: a sync cut off by the failover runs again,
    # and finds its customer by the identity alias instead of creating a second one).
    assert _wait(lambda: _customers(stack) >= ACCOUNTS, RESUME_S), (
        f"{_customers(stack)} of {ACCOUNTS} customers {RESUME_S:g}s after the failover"
    )
    assert _customers(stack) == ACCOUNTS
    assert time.monotonic() - failed_over_at < RESUME_S

    # The liveness check reaches a worker's main loop (a remote-control ping): the stuck
    # workers answered none.
    check = run_cli(
        stack.env(), "check", "--quick", "--node", f"{WORKERS[0]}@{socket.gethostname()}"
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # `crmsync status` lists both workers' main loops as turning (the stuck ones stopped
    # ticking: STALLED there).
    status = run_cli(stack.env(), "status", "--json")
    assert status.returncode == 0, status.stderr
    listed = {c["node"]: c for c in json.loads(status.stdout)["consumers"]}
    assert set(listed) == {f"{name}@{socket.gethostname()}" for name in WORKERS}
    assert not any(c["stalled"] for c in listed.values())
    assert all(c["seconds_since_tick"] < 3 * TICK_S for c in listed.values())

    # A warm shutdown still works: SIGTERM reaches a loop that is not stuck in a read.
    for process in workers:
        process.terminate()
    for process in workers:
        try:
            assert process.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop a worker within 30 s")
