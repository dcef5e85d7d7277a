"""One running product for the operations tests: Redis, emulators, a webhook receiver and a
`crmsync worker --metrics-port` process, on the demo's mapping. Tests share it (startup is the
slow part) and each creates the accounts it polls."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.support import Receiver, free_port
from tests.support.processes import REPO_ROOT, crmsync_env
from worker.demo import demo_mapping
from worker.sandbox.stack import SandboxStack


@dataclass
class OpsStack:
    stack: SandboxStack
    receiver: Receiver
    metrics_port: int
    worker_log: Path
    base: Path


@pytest.fixture(scope="session")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    base = tmp_path_factory.mktemp("ops")
    receiver = Receiver()
    stack = SandboxStack(
        data_dir=base / "data",
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
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "worker",
                "--concurrency=2",
                "--hostname=ops@%h",
                f"--metrics-port={port}",
            ],
            cwd=REPO_ROOT,
            env=crmsync_env(stack.env()),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        stack.wait_for_worker(timeout_s=90)
        yield OpsStack(stack, receiver, port, log_path, base)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        stack.stop()
        receiver.close()
