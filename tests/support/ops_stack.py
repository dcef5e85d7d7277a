"""One running product for the operations tests: Redis, emulators, a webhook receiver and a
`crmsync worker --metrics-port` process, on the demo's mapping. Tests share it (startup is the
slow part) and each creates the accounts it polls.

A pytest plugin (tests/conftest.py lists it): the tests that use it live in commands/,
telemetry/, outages/ and deploy/, by what they check, and one session-scoped product serves
them all in each pytest process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.prewarmed import start_service
from tests.support.waiting import Receiver, free_port
from worker.demo.seed import demo_mapping
from worker.sandbox.stack import SandboxStack


@dataclass
class OpsStack:
    stack: SandboxStack
    receiver: Receiver
    metrics_port: int
    worker_log: Path
    base: Path


@pytest.fixture(scope="session")
def running_ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    base = tmp_path_factory.mktemp("ops")
    receiver = Receiver()
    stack = SandboxStack(
        data_dir=base / "data",
        launcher=start_service,
        mapping_file=demo_mapping(base / "mapping.yaml"),
        extra_env={
            "CRMSYNC_ALERT_WEBHOOK_URL": receiver.url,
            "CRMSYNC_ALERT_CHECK_INTERVAL_S": "0.2",
            "CRMSYNC_RETRY_IMMEDIATELY": "1",
            "CRMSYNC_LOG_FORMAT": "json",
        },
    )
    stack.start()
    port = free_port()
    log_path = base / "worker.log"
    stack.start_worker(log_path, concurrency=2, name="ops", extra_args=(f"--metrics-port={port}",))
    try:
        stack.wait_for_worker(timeout_s=90)
        yield OpsStack(stack, receiver, port, log_path, base)
    finally:
        stack.stop()
        receiver.close()


@pytest.fixture
def ops(running_ops: OpsStack) -> OpsStack:
    """The session's running product, with this process's Celery app pointed at it again: a
    module of another package run in between (pytest-xdist sends files to workers in any
    order) started a stack of its own, which took the process-wide app."""
    running_ops.stack.activate()
    return running_ops
